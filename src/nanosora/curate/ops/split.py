"""Mappers that cut one clip into several: by scene (PySceneDetect), by duration, by keyframe.

A split does not write files: each piece becomes a manifest row with the same ``path`` and its
own ``start``/``end`` (seconds inside ``path``), ``duration`` and ``num_frames`` (DESIGN.md
section 2), plus ``scene_index``/``scene_count``. ``nanosora clips`` cuts the files when they are
needed, frame-exactly; later operators in the recipe read just the piece's range. Data-Juicer
writes every piece with ffmpeg instead, which is most of its cost for this operator.

Scene detection feeds PySceneDetect's detector the frames of the shared decode pass, downscaled
exactly as its ``SceneManager`` does (``compute_downscale_factor``, linear interpolation), and
builds scenes from cuts with its own ``get_scenes_from_cuts``, so the cuts match
``scenedetect.detect(path, detector, start_in_scene=True)``, the call Data-Juicer makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from nanosora.curate.frames import ClipRange
from nanosora.curate.ops.base import (
    Mapper,
    OpError,
    Row,
    RowContext,
    check_choice,
    check_range,
)
from nanosora.video.io import VideoError

DETECTORS = ("ContentDetector", "AdaptiveDetector", "ThresholdDetector")


def piece(row: Row, start: float, end: float, num_frames: int, index: int, count: int) -> Row:
    """A copy of ``row`` narrowed to ``[start, end)`` seconds of its file."""
    return {**row, "start": start, "end": end, "duration": end - start,
            "num_frames": num_frames, "scene_index": index, "scene_count": count}  # fmt: skip


class SceneConsumer:
    """Every frame, downscaled like SceneManager, into a PySceneDetect detector."""

    def __init__(self, clip: ClipRange, op: VideoSplitBySceneMapper) -> None:
        from scenedetect.scene_manager import compute_downscale_factor

        self.detector = op.build_detector()
        factor = compute_downscale_factor(clip.width)
        self.size = (clip.height, clip.width)
        if factor > 1.0:
            self.size = (max(1, round(clip.height / factor)), max(1, round(clip.width / factor)))
        self.rate = Fraction(clip.fps).limit_denominator(100000)
        self.times: list[float] = []
        self.cuts: list[Any] = []
        self.fps = clip.fps

    def want(self, index: int) -> tuple[int, int] | None:
        return self.size

    def feed(self, index: int, t: float, frame: np.ndarray) -> None:
        from scenedetect import FrameTimecode

        self.times.append(t)
        self.cuts += self.detector.process_frame(FrameTimecode(index, self.rate), frame)

    def result(self) -> dict[str, Any]:
        from scenedetect import FrameTimecode
        from scenedetect.scene_manager import get_scenes_from_cuts

        n = len(self.times)
        if n == 0:
            return {"scenes": []}
        self.cuts += self.detector.post_process(FrameTimecode(n - 1, self.rate))
        cuts = sorted({c.frame_num for c in self.cuts})
        scenes = get_scenes_from_cuts(cuts, 0, n)
        end_time = self.times[-1] + 1.0 / self.fps
        bounds = [(int(a), int(b)) for a, b in scenes]
        return {"scenes": [(self.times[a], self.times[b] if b < n else end_time, b - a)
                           for a, b in bounds]}  # fmt: skip


@dataclass(frozen=True)
class VideoSplitBySceneMapper(Mapper):
    """One row per detected scene (Data-Juicer's parameters; detector options as keywords)."""

    name = "video_split_by_scene_mapper"
    detector: str = "ContentDetector"
    threshold: float = 27.0
    min_scene_len: int = 15
    show_progress: bool = False
    save_dir: str | None = None  # accepted for recipe compatibility: no files are written
    save_field: str | None = None
    ffmpeg_extra_args: str = ""
    output_format: str = "path"
    luma_only: bool = False
    kernel_size: int | None = None
    window_width: int = 2
    min_content_val: float = 15.0
    fade_bias: float = 0.0
    add_final_scene: bool = False

    def __post_init__(self) -> None:
        check_choice(self.name, "detector", self.detector, DETECTORS)
        check_range(self.name, "threshold", self.threshold, 0)
        check_range(self.name, "min_scene_len", self.min_scene_len, 0)
        check_choice(self.name, "output_format", self.output_format, ("path", "bytes"))
        if self.kernel_size is not None and (self.kernel_size < 3 or self.kernel_size % 2 == 0):
            raise OpError(f"{self.name}: kernel_size must be odd and >= 3, got {self.kernel_size}")

    def build_detector(self) -> Any:
        """A fresh detector (they are stateful), built as Data-Juicer builds it."""
        from scenedetect import detectors

        match self.detector:
            case "ContentDetector":
                return detectors.ContentDetector(self.threshold, self.min_scene_len,
                                                 luma_only=self.luma_only,
                                                 kernel_size=self.kernel_size)  # fmt: skip
            case "AdaptiveDetector":
                return detectors.AdaptiveDetector(
                    self.threshold, self.min_scene_len, window_width=self.window_width,
                    min_content_val=self.min_content_val, luma_only=self.luma_only,
                    kernel_size=self.kernel_size,
                )  # fmt: skip
            case _:
                return detectors.ThresholdDetector(self.threshold, self.min_scene_len,
                                                   fade_bias=self.fade_bias,
                                                   add_final_scene=self.add_final_scene)  # fmt: skip

    def consumer(self, clip: ClipRange) -> SceneConsumer:
        return SceneConsumer(clip, self)

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        scenes = ctx.frame_stats(self)["scenes"]
        if len(scenes) <= 1:  # no cut: the row stays whole, as in Data-Juicer
            return [{**row, "scene_index": 0, "scene_count": 1}]
        return [piece(row, a, b, n, i, len(scenes)) for i, (a, b, n) in enumerate(scenes)]


@dataclass(frozen=True)
class VideoSplitByDurationMapper(Mapper):
    """Pieces of ``split_duration`` seconds; a last piece shorter than
    ``min_last_split_duration`` is dropped; ``keep_original_sample`` keeps the whole row too."""

    name = "video_split_by_duration_mapper"
    split_duration: float = 10
    min_last_split_duration: float = 0
    keep_original_sample: bool = True
    save_dir: str | None = None
    save_field: str | None = None

    def __post_init__(self) -> None:
        check_range(self.name, "split_duration", self.split_duration, 1e-6)
        check_range(self.name, "min_last_split_duration", self.min_last_split_duration, 0)

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        clip = ctx.clip
        start, duration = clip.start, float(row["duration"])
        count = max(1, math.ceil(duration / self.split_duration - 1e-9))
        pieces = []
        for k in range(count):
            a = start + k * self.split_duration
            b = min(a + self.split_duration, start + duration)
            if k == count - 1 and count > 1 and b - a < self.min_last_split_duration:
                break
            pieces.append((a, b))
        out = [piece(row, a, b, max(1, round((b - a) * clip.fps)), i, len(pieces))
               for i, (a, b) in enumerate(pieces)]  # fmt: skip
        return ([{**row, "scene_index": -1, "scene_count": len(pieces)}] if
                self.keep_original_sample else []) + out  # fmt: skip


def keyframe_times(clip: ClipRange) -> list[float]:
    """Times (s) of the keyframes inside ``[start, end)``, read from packet flags (no decoding)."""
    times = []
    try:
        with av.open(clip.path, "r") as container:
            stream = container.streams.video[0]
            origin, tb = stream.start_time or 0, stream.time_base
            for packet in container.demux(stream):
                if packet.size and packet.is_keyframe and packet.pts is not None and tb:
                    t = float((packet.pts - origin) * tb)
                    if t >= clip.start - 1e-6 and (clip.end is None or t < clip.end - 1e-6):
                        times.append(t)
    except av.FFmpegError as e:
        raise VideoError(f"{clip.path}: cannot demux: {e}") from e
    return sorted(times)


@dataclass(frozen=True)
class VideoSplitByKeyFrameMapper(Mapper):
    """One piece per keyframe interval (cuts that a stream copy can make losslessly)."""

    name = "video_split_by_key_frame_mapper"
    keep_original_sample: bool = True
    save_dir: str | None = None
    save_field: str | None = None

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        clip = ctx.clip
        stop = clip.start + float(row["duration"])
        bounds = [t for t in keyframe_times(clip) if t > clip.start + 1e-6] + [stop]
        starts = [clip.start] + bounds[:-1]
        out = [piece(row, a, b, max(1, round((b - a) * clip.fps)), i, len(starts))
               for i, (a, b) in enumerate(zip(starts, bounds, strict=True))]  # fmt: skip
        return ([{**row, "scene_index": -1, "scene_count": len(out)}] if
                self.keep_original_sample else []) + out  # fmt: skip
