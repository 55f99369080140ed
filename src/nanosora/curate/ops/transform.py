"""Resize and crop clips to a target resolution or aspect ratio (re-encoded with PyAV/FFmpeg).

These mappers write new files (a row's ``[start, end)`` is cut at the same time), into the
operator's ``save_dir`` or the run's clip folder, named after the row's ``curate_id`` so a rerun
finds them. The row then points at the new file: ``path`` is the new file, ``start``/``end`` are
emptied, ``source_path``/``source_start``/``source_end`` keep where it came from (set once, by the
first operator that rewrites the file, as ``nanosora clips`` does), and the probe columns
describe the new file. Rows that already meet the target pass through untouched.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from nanosora.curate.ops.base import (
    Mapper,
    Row,
    RowContext,
    check_choice,
    check_order,
    check_range,
    missing,
)
from nanosora.curate.ops.meta import parse_ratio
from nanosora.video.io import read_video, resize_frame, write_video

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def rewrite(row: Row, ctx: RowContext, op: str, save_dir: str | None, size: tuple[int, int],
            crop: bool = False) -> Row:  # fmt: skip
    """Write ``row``'s clip resized to ``size = (H, W)`` (cover + centre crop if ``crop``)."""
    clip = ctx.clip
    folder = save_dir or ctx.out_dir
    name = _SAFE.sub("_", f"{row.get('curate_id', 'row')}.{op}.mp4")
    out = os.path.abspath(os.path.join(folder, name))
    if not os.path.exists(out):  # written atomically, so an existing file is complete
        frames = read_video(clip.path, start=clip.start, end=clip.end)
        frames = np.stack([_fit(f, size, crop) for f in frames])
        write_video(out, frames, fps=clip.fps, crf=18)
    h, w = size
    new = {**row, "path": out, "start": None, "end": None, "height": h, "width": w,
           "aspect_ratio": h / w}  # fmt: skip
    if missing(row.get("source_path")):
        new.update(source_path=row["path"], source_start=row.get("start"),
                   source_end=row.get("end"))  # fmt: skip
    return new


def _fit(frame: np.ndarray, size: tuple[int, int], crop: bool) -> np.ndarray:
    h, w = size
    if not crop:
        return resize_frame(frame, size)
    scale = max(h / frame.shape[0], w / frame.shape[1])
    big = resize_frame(frame, (max(h, round(frame.shape[0] * scale)),
                               max(w, round(frame.shape[1] * scale))))  # fmt: skip
    y, x = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
    return big[y : y + h, x : x + w]


def aspect_rescale(
    width: int, height: int, lo: Fraction, hi: Fraction, strategy: str
) -> tuple[int, int]:
    """Data-Juicer's ``rescale``: stretch one side (even sizes) until W/H is in ``[lo, hi]``."""
    ratio = Fraction(width, height)
    w, h = width, height
    if ratio < lo:
        if strategy == "increase":
            w = math.ceil(height * lo)
            w += w % 2
        else:
            h = math.floor(width / lo)
            h -= h % 2
    elif ratio > hi:
        if strategy == "increase":
            h = math.ceil(width / hi)
            h += h % 2
        else:
            w = math.floor(height * hi)
            w -= w % 2
    return max(2, w), max(2, h)


@dataclass(frozen=True)
class VideoResizeAspectRatioMapper(Mapper):
    """Stretch clips whose W/H is outside ``[min_ratio, max_ratio]`` (Data-Juicer's semantics)."""

    name = "video_resize_aspect_ratio_mapper"
    min_ratio: Any = "9/21"
    max_ratio: Any = "21/9"
    strategy: str = "increase"
    save_dir: str | None = None

    def __post_init__(self) -> None:
        lo = parse_ratio(self.name, "min_ratio", self.min_ratio)
        hi = parse_ratio(self.name, "max_ratio", self.max_ratio)
        check_order(self.name, "min_ratio", lo, "max_ratio", hi)
        check_choice(self.name, "strategy", self.strategy, ("increase", "decrease"))

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        clip = ctx.clip
        lo = parse_ratio(self.name, "min_ratio", self.min_ratio)
        hi = parse_ratio(self.name, "max_ratio", self.max_ratio)
        if lo <= Fraction(clip.width, clip.height) <= hi:
            return [row]
        w, h = aspect_rescale(clip.width, clip.height, lo, hi, self.strategy)
        return [rewrite(row, ctx, self.name, self.save_dir, (h, w))]


@dataclass(frozen=True)
class VideoResizeResolutionMapper(Mapper):
    """Scale clips into ``[min_width, max_width] x [min_height, max_height]``.

    ``force_original_aspect_ratio``: "disable" clamps each side on its own (stretching),
    "decrease"/"increase" scale both sides by one factor (FFmpeg's scale-filter options);
    sizes then round to ``force_divisible_by`` (2 for yuv420p).
    """

    name = "video_resize_resolution_mapper"
    min_width: int = 1
    max_width: int = sys.maxsize
    min_height: int = 1
    max_height: int = sys.maxsize
    force_original_aspect_ratio: str = "disable"
    force_divisible_by: int = 2
    save_dir: str | None = None

    def __post_init__(self) -> None:
        for key in ("min_width", "max_width", "min_height", "max_height", "force_divisible_by"):
            check_range(self.name, key, getattr(self, key), 1)
        check_order(self.name, "min_width", self.min_width, "max_width", self.max_width)
        check_order(self.name, "min_height", self.min_height, "max_height", self.max_height)
        check_choice(self.name, "force_original_aspect_ratio", self.force_original_aspect_ratio,
                     ("disable", "decrease", "increase"))  # fmt: skip

    def target(self, width: int, height: int) -> tuple[int, int]:
        """``(H, W)`` for a ``width x height`` clip."""
        w = min(max(width, self.min_width), self.max_width)
        h = min(max(height, self.min_height), self.max_height)
        if self.force_original_aspect_ratio != "disable":
            pick = min if self.force_original_aspect_ratio == "decrease" else max
            scale = pick(w / width, h / height)
            w, h = round(width * scale), round(height * scale)
        d = self.force_divisible_by
        return max(d, h // d * d), max(d, w // d * d)

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        clip = ctx.clip
        size = self.target(clip.width, clip.height)
        if size == (clip.height, clip.width):
            return [row]
        return [rewrite(row, ctx, self.name, self.save_dir, size)]


@dataclass(frozen=True)
class VideoResizeCropMapper(Mapper):
    """Scale to cover ``height x width`` and crop the centre (Open-Sora's bucket preprocessing)."""

    name = "video_resize_crop_mapper"
    height: int = 256
    width: int = 256
    save_dir: str | None = None

    def __post_init__(self) -> None:
        check_range(self.name, "height", self.height, 2)
        check_range(self.name, "width", self.width, 2)

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        clip = ctx.clip
        if (clip.height, clip.width) == (self.height, self.width):
            return [row]
        return [rewrite(row, ctx, self.name, self.save_dir, (self.height, self.width), crop=True)]
