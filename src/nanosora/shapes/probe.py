"""Read colour, shape and direction back from a shapes-world video (DESIGN.md section 3).

This is the grader for generated videos, so it must be right on clean data (>= 99% per attribute
on our own mp4 files, tested) and degrade gracefully on a model's blurry, noisy samples:

1. mask: pixels clearly brighter than the background, threshold halfway between the frame's
   background level (median) and the object's level (a high percentile); keep the largest
   8-connected component so noise specks and compression ringing do not count;
2. colour: per-channel median of the eroded interior over all frames (edges carry chroma bleed
   from 4:2:0 subsampling), nearest palette colour in CIELAB, where hue differences such as
   orange/yellow/red and white/cyan are large and brightness errors count less than in RGB;
3. shape: two cues, medians over frames: the fill ratio of the bounding box (circle pi/4,
   square 1, triangle and the fine-tuning demo's diamond 1/2) and the taper, mean width of the
   top quarter of rows over the bottom quarter (apex-up triangle ~0.15, circle, square and
   diamond ~1), which survives blur far better;
4. direction: least-squares slope of the centroid over frame index; dominant axis and sign
   (image y grows downward, so "up" is a negative y displacement).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from nanosora.shapes.world import COLORS
from nanosora.video.io import read_video

MIN_CONTRAST = 48  # object must be this much brighter (max channel, 0-255) than the background
MIN_AREA = 12  # px; smaller components are noise, not a 14-20 px object
MIN_DISPLACEMENT = 2.0  # px over the clip; below this the object is called static (None)
TAPER_TRIANGLE = 0.45  # top/bottom width ratio below which the object is an apex-up triangle
FILL_SQUARE = 0.89  # midway between circle (0.785) and square (1.0)
# The fine-tuning demo's new shape, a diamond (square on a corner), has a triangle's fill (1/2)
# but no taper; below this fill an untapered object is a diamond rather than a circle.
FILL_DIAMOND = 0.68  # between diamond (0.5 exact, ~0.6 on mp4) and circle (0.785)
TAPER_DIAMOND = 0.7  # a diamond's top and bottom quarters are equally narrow (taper ~1)


@dataclass(frozen=True)
class ProbeResult:
    """What the probe read from one clip; None where it could not decide."""

    color: str | None
    shape: str | None
    direction: str | None
    fill_ratio: float  # median object area / bounding-box area over found frames
    displacement: tuple[float, float]  # (dx, dy) px of the centroid over the clip
    found_frames: int  # frames in which an object was detected


@dataclass(frozen=True)
class _FrameObject:
    """The detected object in one frame."""

    mask: np.ndarray  # (h, w) bool, cropped to its bounding box
    interior: np.ndarray  # (n, 3) uint8 RGB pixels of the eroded mask
    centroid: tuple[float, float]  # (x, y)


def _palette_lab() -> tuple[list[str], np.ndarray]:
    """Palette names and their CIELAB coordinates `(8, 3)`."""
    names = list(COLORS)
    rgb = np.array([COLORS[n] for n in names], np.float32)[None] / 255.0
    return names, cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[0]


_PALETTE_NAMES, _PALETTE_LAB = _palette_lab()


def nearest_color(rgb: np.ndarray) -> str:
    """Name of the palette colour nearest (CIELAB distance) to one RGB triple (0-255)."""
    lab = cv2.cvtColor(np.asarray(rgb, np.float32).reshape(1, 1, 3) / 255.0, cv2.COLOR_RGB2LAB)
    return _PALETTE_NAMES[int(np.linalg.norm(_PALETTE_LAB - lab[0, 0], axis=1).argmin())]


def _detect(frame: np.ndarray) -> _FrameObject | None:
    """Find the object in one `(H, W, 3)` uint8 frame, or None if nothing stands out."""
    # Max channel: a brightness that treats every hue alike (blue is dark in luma). The 3x3
    # median removes pixel noise that would make the mask's outline ragged, yet keeps corners.
    value = cv2.medianBlur(np.ascontiguousarray(frame.max(axis=2)), 3)
    background = float(np.median(value))
    peak = float(np.percentile(value, 99.7))
    if peak - background < MIN_CONTRAST:
        return None
    mask = (value > (background + peak) / 2).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n < 2:
        return None
    best = 1 + int(stats[1:, cv2.CC_STAT_AREA].argmax())  # label 0 is the background
    if stats[best, cv2.CC_STAT_AREA] < MIN_AREA:
        return None
    x, y, w, h = (int(v) for v in stats[best, :4])
    component = (labels == best).astype(np.uint8)
    eroded = cv2.erode(component, np.ones((3, 3), np.uint8))
    # Tiny or thin objects may erode away entirely; their full mask is better than nothing.
    inner = eroded if eroded.sum() >= 4 else component
    return _FrameObject(
        mask=component[y : y + h, x : x + w].astype(bool),
        interior=frame[inner.astype(bool)],
        centroid=(float(centroids[best, 0]), float(centroids[best, 1])),
    )


def _taper(mask: np.ndarray) -> float:
    """Mean row width of the top quarter of `mask` over that of the bottom quarter."""
    band = max(1, mask.shape[0] // 4)
    widths = mask.sum(axis=1).astype(np.float64)
    return float(widths[:band].mean() / max(widths[-band:].mean(), 1.0))


def _classify_shape(fill: float, taper: float) -> str:
    """Shape from the median fill ratio and taper (see module docstring, step 3)."""
    if taper < TAPER_TRIANGLE:
        return "triangle"
    if fill >= FILL_SQUARE:
        return "square"
    if fill < FILL_DIAMOND and taper >= TAPER_DIAMOND:
        return "diamond"
    # Wide at the bottom but not tapered enough: fall back to the nearest fill prototype.
    return "triangle" if fill < (0.5 + 0.785) / 2 else "circle"


def _direction(
    frames_idx: np.ndarray, centroids: np.ndarray, num_frames: int
) -> tuple[float, float]:
    """Centroid displacement `(dx, dy)` over the clip from a least-squares line through time."""
    if len(frames_idx) < 2:
        return 0.0, 0.0
    slope = np.polyfit(frames_idx.astype(np.float64), centroids, deg=1)[0]  # (2,) px per frame
    return float(slope[0] * (num_frames - 1)), float(slope[1] * (num_frames - 1))


def _direction_name(dx: float, dy: float) -> str | None:
    """Dominant-axis direction of a displacement, or None if the object barely moved."""
    if max(abs(dx), abs(dy)) < MIN_DISPLACEMENT:
        return None
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def probe_frames(frames: np.ndarray) -> ProbeResult:
    """Probe uint8 `(T, H, W, 3)` RGB frames for the object's colour, shape and direction."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    found = [(t, obj) for t, f in enumerate(frames) if (obj := _detect(f)) is not None]
    if not found:
        return ProbeResult(None, None, None, 0.0, (0.0, 0.0), 0)
    objects = [obj for _, obj in found]
    interior = np.concatenate([o.interior for o in objects])
    color = nearest_color(np.median(interior, axis=0))
    fill = float(np.median([o.mask.mean() for o in objects]))
    taper = float(np.median([_taper(o.mask) for o in objects]))
    idx = np.array([t for t, _ in found])
    centroids = np.array([o.centroid for o in objects])
    dx, dy = _direction(idx, centroids, len(frames))
    return ProbeResult(
        color=color,
        shape=_classify_shape(fill, taper),
        direction=_direction_name(dx, dy),
        fill_ratio=fill,
        displacement=(dx, dy),
        found_frames=len(found),
    )


def probe_video(path: str | os.PathLike) -> ProbeResult:
    """Decode a video file and `probe_frames` it (raises `VideoError` if it cannot be read)."""
    return probe_frames(read_video(path))


def adherence(
    results: Sequence[ProbeResult], targets: Sequence[tuple[str, str, str]]
) -> dict[str, float]:
    """Accuracy of probe `results` against `(color, shape, direction)` targets.

    Returns `{"color", "shape", "direction", "joint", "n"}`; "joint" (all three right) is the
    prompt adherence of DESIGN.md section 3. An undetermined (None) attribute counts as wrong.
    """
    if len(results) != len(targets):
        raise ValueError(f"{len(results)} results for {len(targets)} targets")
    n = len(results)
    if n == 0:
        return {"color": 0.0, "shape": 0.0, "direction": 0.0, "joint": 0.0, "n": 0}
    hits = np.array(
        [
            (r.color == c, r.shape == s, r.direction == d)
            for r, (c, s, d) in zip(results, targets, strict=True)
        ]
    )
    return {
        "color": float(hits[:, 0].mean()),
        "shape": float(hits[:, 1].mean()),
        "direction": float(hits[:, 2].mean()),
        "joint": float(hits.all(axis=1).mean()),
        "n": n,
    }
