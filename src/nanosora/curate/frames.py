"""One decode pass per clip, shared by every operator that looks at pixels.

Data-Juicer opens and decodes a video once per operator (duration, resolution, aspect, motion,
scene split: four opens and two full decodes for the benchmark recipe), and its motion filter
seeks with OpenCV between sampled frames, which re-decodes from the previous keyframe each time.
Here each operator that needs frames hands the pass a `FrameConsumer`; the pass decodes the
clip's range ``[start, end)`` once, in order, converts a frame to BGR only if some consumer wants
it, and resizes it once per distinct size asked for. Frames are BGR uint8 ``(H, W, 3)``, the layout
OpenCV and PySceneDetect expect, so their numbers match what Data-Juicer computes from
``cv2.VideoCapture`` frames (same swscale conversion, same ``cv2.resize``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import av
import cv2
import numpy as np

from nanosora.video.io import VideoError

_TIME_EPS = 1e-6  # same slack as nanosora.video.io when comparing frame times with user times


@dataclass(frozen=True)
class ClipRange:
    """Which frames of which file: the row's ``path`` (absolute) and its ``[start, end)`` seconds.

    ``fps`` and ``num_frames`` describe the range (from the probe), so consumers can plan their
    sampling before the first frame arrives.
    """

    path: str
    start: float
    end: float | None
    fps: float
    num_frames: int
    width: int
    height: int


class FrameConsumer(Protocol):
    """Something that reads frames of one clip during a shared decode pass."""

    def want(self, index: int) -> tuple[int, int] | None:
        """The ``(H, W)`` this consumer wants frame ``index`` (0 = first frame of the range) at,
        or None to skip it."""
        ...

    def feed(self, index: int, t: float, frame: np.ndarray) -> None:
        """Receive frame ``index`` at time ``t`` (s in the file) as BGR uint8 ``(H, W, 3)``."""
        ...

    def result(self) -> dict[str, Any]:
        """Statistics after the last frame (column name -> value)."""
        ...


def run_pass(clip: ClipRange, consumers: list[FrameConsumer]) -> list[dict[str, Any]]:
    """Decode ``clip`` once, feed every consumer the frames it wants; returns their results.

    Raises VideoError if the file cannot be decoded or the range holds no frame.
    """
    count = 0
    try:
        with av.open(clip.path, "r") as container:
            if not container.streams.video:
                raise VideoError(f"{clip.path}: no video stream")
            stream = container.streams.video[0]
            for index, (t, frame) in enumerate(_decode_range(container, stream, clip)):
                count += 1
                wanted = [(c, c.want(index)) for c in consumers]
                if all(size is None for _, size in wanted):
                    continue
                bgr = frame.to_ndarray(format="bgr24")
                resized: dict[tuple[int, int], np.ndarray] = {}
                for consumer, size in wanted:
                    if size is None:
                        continue
                    if size not in resized:
                        resized[size] = resize_bgr(bgr, size)
                    consumer.feed(index, t, resized[size])
    except av.FFmpegError as e:
        raise VideoError(f"{clip.path}: undecodable video data: {e}") from e
    if count == 0:
        raise VideoError(f"{clip.path}: no frames in [{clip.start}, {clip.end})")
    return [c.result() for c in consumers]


def resize_bgr(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``(H, W, 3)`` to ``size = (H', W')`` with INTER_AREA when shrinking (as Data-Juicer's
    motion filter does), INTER_LINEAR when growing."""
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    shrinking = h * w < frame.shape[0] * frame.shape[1]
    return cv2.resize(
        frame, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    )


def _decode_range(
    container: av.container.InputContainer, stream: av.VideoStream, clip: ClipRange
) -> Any:
    """Yield ``(t, frame)`` for the frames with ``start <= t < end`` (seek to the keyframe before
    ``start`` first, then drop by timestamp, so cuts are frame-exact whatever the GOP)."""
    tb = stream.time_base
    origin = stream.start_time or 0
    if clip.start > 0 and tb is not None:
        container.seek(origin + int(clip.start / tb), stream=stream, backward=True, any_frame=False)
    for i, frame in enumerate(container.decode(stream)):
        t = float((frame.pts - origin) * tb) if frame.pts is not None and tb else i / clip.fps
        if t < clip.start - _TIME_EPS:
            continue
        if clip.end is not None and t >= clip.end - _TIME_EPS:
            break
        yield t, frame


def stream_digest(path: str | os.PathLike) -> str:
    """SHA-1 of the first video stream's packet payloads (demux only, no decoding).

    Two files with the same encoded video are exact duplicates even when their containers,
    metadata or audio differ (a remux, a re-upload with a new title), which a file hash misses.
    """
    import hashlib

    digest = hashlib.sha1()
    try:
        with av.open(os.fspath(path), "r") as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            for packet in container.demux(container.streams.video[0]):
                if packet.size:
                    digest.update(bytes(packet))
    except av.FFmpegError as e:
        raise VideoError(f"{path}: cannot demux: {e}") from e
    return digest.hexdigest()
