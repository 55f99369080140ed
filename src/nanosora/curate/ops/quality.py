"""Static, black, blank and frozen clips: cheap pixel statistics on frames sampled at a few fps.

Open-Sora and Panda-70M drop such clips before scoring (a title card, a fade to black, a
stalled stream); Data-Juicer has no operator for them, so the names are ours. Frames are sampled
by index like the motion filter (every ``round(fps / sampling_fps)``-th frame), converted to grey
and shrunk so the shorter side is 64 px (the statistics are averages; resolution barely moves
them and the cost drops ~20x on HD).

Per clip: ``black_ratio`` (share of sampled frames whose mean grey level < ``threshold``),
``blank_ratio`` (share whose grey standard deviation < ``max_std``: one flat colour),
``frozen_ratio`` (share of consecutive sampled pairs whose mean absolute difference <
``max_diff``: a stuck frame) and ``static_score`` (mean absolute difference between
consecutive sampled frames, grey levels 0-255: how much anything changes at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nanosora.curate.frames import ClipRange
from nanosora.curate.ops.base import Filter, Row, RowContext, check_range, range_reason

_SHORT_SIDE = 64


class FrameStatsConsumer:
    """Grey-level statistics of sampled frames (module docstring)."""

    def __init__(self, clip: ClipRange, sampling_fps: float, black: float, std: float,
                 diff: float) -> None:  # fmt: skip
        step = round(clip.fps / min(sampling_fps, clip.fps)) if clip.fps > 0 else 1
        self.step = max(step, 1)
        scale = min(1.0, _SHORT_SIDE / min(clip.width, clip.height))
        self.size = (max(1, round(clip.height * scale)), max(1, round(clip.width * scale)))
        self.black, self.std, self.diff = black, std, diff
        self.means: list[float] = []
        self.stds: list[float] = []
        self.diffs: list[float] = []
        self.prev: np.ndarray | None = None

    def want(self, index: int) -> tuple[int, int] | None:
        return self.size if index % self.step == 0 else None

    def feed(self, index: int, t: float, frame: np.ndarray) -> None:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.float32)
        self.means.append(float(gray.mean()))
        self.stds.append(float(gray.std()))
        if self.prev is not None:
            self.diffs.append(float(np.abs(gray - self.prev).mean()))
        self.prev = gray

    def result(self) -> dict[str, Any]:
        means, stds, diffs = map(np.asarray, (self.means, self.stds, self.diffs))
        return {
            "black_ratio": float((means < self.black).mean()) if means.size else 1.0,
            "blank_ratio": float((stds < self.std).mean()) if stds.size else 1.0,
            "frozen_ratio": float((diffs < self.diff).mean()) if diffs.size else 1.0,
            "static_score": float(diffs.mean()) if diffs.size else 0.0,
        }


@dataclass(frozen=True)
class _FrameStatsFilter(Filter):
    sampling_fps: float = 2.0
    threshold: float = 20.0  # grey level below which a frame counts as black
    max_std: float = 5.0  # grey standard deviation below which a frame counts as blank
    max_diff: float = 0.5  # mean absolute difference below which a frame pair counts as frozen

    def __post_init__(self) -> None:
        check_range(self.name, "sampling_fps", self.sampling_fps, 1e-9)
        check_range(self.name, "threshold", self.threshold, 0, 255)
        check_range(self.name, "max_std", self.max_std, 0, 255)
        check_range(self.name, "max_diff", self.max_diff, 0, 255)

    def consumer(self, clip: ClipRange) -> FrameStatsConsumer:
        return FrameStatsConsumer(clip, self.sampling_fps, self.threshold, self.max_std,
                                  self.max_diff)  # fmt: skip

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        stats = ctx.frame_stats(self)
        return {c: stats[c] for c in self.columns}


def _ratio_checks(op: Any) -> None:
    check_range(op.name, "min_ratio", op.min_ratio, 0, 1)
    check_range(op.name, "max_ratio", op.max_ratio, 0, 1)


@dataclass(frozen=True)
class VideoBlackFramesFilter(_FrameStatsFilter):
    """Drop clips with more than ``max_ratio`` black frames."""

    name = "video_black_frames_filter"
    columns = ("black_ratio",)
    min_ratio: float = 0.0
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _ratio_checks(self)

    def reason(self, row: Row) -> str | None:
        return range_reason("black_ratio", row["black_ratio"], self.min_ratio, self.max_ratio)


@dataclass(frozen=True)
class VideoBlankFramesFilter(_FrameStatsFilter):
    """Drop clips with more than ``max_ratio`` single-colour frames."""

    name = "video_blank_frames_filter"
    columns = ("blank_ratio",)
    min_ratio: float = 0.0
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _ratio_checks(self)

    def reason(self, row: Row) -> str | None:
        return range_reason("blank_ratio", row["blank_ratio"], self.min_ratio, self.max_ratio)


@dataclass(frozen=True)
class VideoFrozenFramesFilter(_FrameStatsFilter):
    """Drop clips where more than ``max_ratio`` of sampled frame pairs are identical."""

    name = "video_frozen_frames_filter"
    columns = ("frozen_ratio",)
    min_ratio: float = 0.0
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        _ratio_checks(self)

    def reason(self, row: Row) -> str | None:
        return range_reason("frozen_ratio", row["frozen_ratio"], self.min_ratio, self.max_ratio)


@dataclass(frozen=True)
class VideoStaticFilter(_FrameStatsFilter):
    """Drop clips whose mean frame-to-frame change (grey levels) is below ``min_score``."""

    name = "video_static_filter"
    columns = ("static_score",)
    min_score: float = 1.0
    max_score: float = 255.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range(self.name, "min_score", self.min_score, 0, 255)
        check_range(self.name, "max_score", self.max_score, 0, 255)

    def reason(self, row: Row) -> str | None:
        return range_reason("static_score", row["static_score"], self.min_score, self.max_score)
