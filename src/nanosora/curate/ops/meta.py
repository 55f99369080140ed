"""Filters on what the probe knows: duration, resolution, aspect ratio, frame rate, frame count.

Names and parameters are Data-Juicer's where it has the filter (``video_duration_filter``,
``video_resolution_filter``, ``video_aspect_ratio_filter``); ``video_fps_filter`` and
``video_frames_num_filter`` are ours. Rows hold one video each, so ``any_or_all`` is accepted
for recipe compatibility and both values mean the same thing. The statistics are the probe's
manifest columns (``duration``, ``width``, ``height``, ``fps``, ``num_frames``), plus
``video_aspect_ratio`` = W / H as Data-Juicer defines it (the manifest's ``aspect_ratio`` is
H / W, Open-Sora's convention, and is left alone).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from nanosora.curate.ops.base import (
    Filter,
    OpError,
    Row,
    RowContext,
    check_choice,
    check_order,
    check_range,
    range_reason,
)

ANY_OR_ALL = ("any", "all")


@dataclass(frozen=True)
class VideoDurationFilter(Filter):
    """Keep clips whose duration (s) is in ``[min_duration, max_duration]``."""

    name = "video_duration_filter"
    columns = ("duration",)
    min_duration: float = 0
    max_duration: float = sys.maxsize
    any_or_all: str = "any"
    video_backend: str = "av"  # Data-Juicer's choice of reader; the probe always uses PyAV

    def __post_init__(self) -> None:
        check_range(self.name, "min_duration", self.min_duration, 0)
        check_range(self.name, "max_duration", self.max_duration, 0)
        check_order(self.name, "min_duration", self.min_duration, "max_duration", self.max_duration)
        check_choice(self.name, "any_or_all", self.any_or_all, ANY_OR_ALL)
        check_choice(self.name, "video_backend", self.video_backend, ("av", "ffmpeg"))

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        ctx.clip  # noqa: B018 -- the probe fills the row's duration
        return {"duration": row["duration"]}

    def reason(self, row: Row) -> str | None:
        return range_reason("duration", row["duration"], self.min_duration, self.max_duration)


@dataclass(frozen=True)
class VideoResolutionFilter(Filter):
    """Keep clips whose width and height (px) are inside the given ranges."""

    name = "video_resolution_filter"
    columns = ("width", "height")
    min_width: int = 1
    max_width: int = sys.maxsize
    min_height: int = 1
    max_height: int = sys.maxsize
    any_or_all: str = "any"

    def __post_init__(self) -> None:
        for key in ("min_width", "max_width", "min_height", "max_height"):
            check_range(self.name, key, getattr(self, key), 1)
        check_order(self.name, "min_width", self.min_width, "max_width", self.max_width)
        check_order(self.name, "min_height", self.min_height, "max_height", self.max_height)
        check_choice(self.name, "any_or_all", self.any_or_all, ANY_OR_ALL)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        ctx.clip  # noqa: B018 -- the probe fills width and height
        return {"width": row["width"], "height": row["height"]}

    def reason(self, row: Row) -> str | None:
        return range_reason("width", row["width"], self.min_width, self.max_width) or range_reason(
            "height", row["height"], self.min_height, self.max_height
        )


def parse_ratio(op: str, name: str, value: Any) -> Fraction:
    """``"9/21"``, ``"9:21"``, ``0.43`` or ``1`` -> Fraction (Data-Juicer accepts the string forms)."""
    try:
        ratio = Fraction(str(value).replace(":", "/"))
    except (ValueError, ZeroDivisionError):
        raise OpError(f"{op}: parameter {name}={value!r} is not a ratio like '9/21'") from None
    if ratio <= 0:
        raise OpError(f"{op}: parameter {name}={value!r} must be positive")
    return ratio


@dataclass(frozen=True)
class VideoAspectRatioFilter(Filter):
    """Keep clips whose W / H is in ``[min_ratio, max_ratio]`` (strings like ``"9/21"`` allowed)."""

    name = "video_aspect_ratio_filter"
    columns = ("video_aspect_ratio",)
    min_ratio: Any = "9/21"
    max_ratio: Any = "21/9"
    any_or_all: str = "any"

    def __post_init__(self) -> None:
        lo = parse_ratio(self.name, "min_ratio", self.min_ratio)
        hi = parse_ratio(self.name, "max_ratio", self.max_ratio)
        check_order(self.name, "min_ratio", lo, "max_ratio", hi)
        check_choice(self.name, "any_or_all", self.any_or_all, ANY_OR_ALL)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        clip = ctx.clip
        return {"video_aspect_ratio": clip.width / clip.height}

    def reason(self, row: Row) -> str | None:
        # Compared as Fractions of the integer sizes, as Data-Juicer does: no float edge cases at
        # exactly 16/9.
        w, h = int(row["width"]), int(row["height"])
        lo = parse_ratio(self.name, "min_ratio", self.min_ratio)
        hi = parse_ratio(self.name, "max_ratio", self.max_ratio)
        return range_reason("video_aspect_ratio", Fraction(w, h), lo, hi)


@dataclass(frozen=True)
class VideoFpsFilter(Filter):
    """Keep clips whose frame rate is in ``[min_fps, max_fps]``."""

    name = "video_fps_filter"
    columns = ("fps",)
    min_fps: float = 0
    max_fps: float = sys.maxsize

    def __post_init__(self) -> None:
        check_range(self.name, "min_fps", self.min_fps, 0)
        check_range(self.name, "max_fps", self.max_fps, 0)
        check_order(self.name, "min_fps", self.min_fps, "max_fps", self.max_fps)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        ctx.clip  # noqa: B018 -- the probe fills fps
        return {"fps": row["fps"]}

    def reason(self, row: Row) -> str | None:
        return range_reason("fps", row["fps"], self.min_fps, self.max_fps)


@dataclass(frozen=True)
class VideoFramesNumFilter(Filter):
    """Keep clips with ``min_num <= num_frames <= max_num``."""

    name = "video_frames_num_filter"
    columns = ("num_frames",)
    min_num: int = 1
    max_num: int = sys.maxsize

    def __post_init__(self) -> None:
        check_range(self.name, "min_num", self.min_num, 0)
        check_range(self.name, "max_num", self.max_num, 0)
        check_order(self.name, "min_num", self.min_num, "max_num", self.max_num)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        ctx.clip  # noqa: B018 -- the probe fills num_frames
        return {"num_frames": row["num_frames"]}

    def reason(self, row: Row) -> str | None:
        return range_reason("num_frames", row["num_frames"], self.min_num, self.max_num)
