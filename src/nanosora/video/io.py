"""Video files in and out: probe, read (time range, fps resampling, resize), write mp4 and GIF.

Frames at this boundary are uint8 `(T, H, W, 3)` RGB (DESIGN.md section 2). PyAV does the
container and codec work; OpenCV only resizes. Every failure is a `VideoError` that names the file
and what is wrong with it, so a bad row in a million-clip manifest can be found from the log line.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from nanosora.atomic import atomic_path

# Frame timestamps are compared with this slack (seconds): float seconds computed from rational
# pts are exact to ~1e-15, so a microsecond only absorbs rounding in user-supplied times.
_TIME_EPS = 1e-6


class VideoError(ValueError):
    """A video file is missing, empty, undecodable, has no video stream, or the request is empty."""


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a file's first video stream."""

    path: str
    duration: float  # seconds
    fps: float
    num_frames: int
    width: int
    height: int
    codec: str


def _check_file(path: str | os.PathLike) -> str:
    """Return `path` as str after the checks that give clearer errors than FFmpeg's."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise VideoError(f"{p}: no such file")
    if os.path.isdir(p):
        raise VideoError(f"{p}: is a directory, not a video file")
    if os.path.getsize(p) == 0:
        raise VideoError(f"{p}: zero-length file")
    return p


@contextmanager
def _open_video(
    path: str | os.PathLike,
) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """Open `path` for reading and yield `(container, first video stream)`; errors -> VideoError."""
    p = _check_file(path)
    try:
        container = av.open(p, "r")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise VideoError(f"{p}: cannot open container (corrupt or not a video): {e}") from e
    try:
        if not container.streams.video:
            raise VideoError(f"{p}: no video stream")
        yield container, container.streams.video[0]
    except av.FFmpegError as e:
        raise VideoError(f"{p}: undecodable video data: {e}") from e
    finally:
        container.close()


def _stream_fps(stream: av.VideoStream) -> float | None:
    """Nominal frame rate from stream metadata, or None when the container does not say."""
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return float(rate)
    return None


def _count_frames(
    container: av.container.InputContainer, stream: av.VideoStream
) -> tuple[int, float]:
    """Demux (no decoding) to count frames; returns `(count, end time in s of the last frame)`.

    One packet carries one frame for every codec we write or ingest, so counting packets is a
    cheap fallback when the header has no frame count or duration.
    """
    count, last_end = 0, 0.0
    start = stream.start_time or 0
    for packet in container.demux(stream):
        if packet.size == 0:  # the flush packet at EOF
            continue
        count += 1
        if packet.pts is not None and packet.time_base is not None:
            end_pts = packet.pts - start + (packet.duration or 0)
            last_end = max(last_end, float(end_pts * packet.time_base))
    return count, last_end


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read the first video stream's metadata; count packets where the header is incomplete."""
    with _open_video(path) as (container, stream):
        fps = _stream_fps(stream)
        num_frames = stream.frames or 0
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        if num_frames <= 0 or duration <= 0 or fps is None:
            counted, last_end = _count_frames(container, stream)
            num_frames = num_frames if num_frames > 0 else counted
            duration = duration if duration > 0 else last_end
            if fps is None:
                fps = num_frames / duration if duration > 0 else 0.0
        if num_frames <= 0:
            raise VideoError(f"{os.fspath(path)}: video stream has no frames")
        return VideoInfo(
            path=os.fspath(path),
            duration=duration,
            fps=float(fps),
            num_frames=int(num_frames),
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
        )


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize one `(H, W, C)` frame to `size = (H', W')`.

    INTER_AREA when shrinking (it averages, so no aliasing), INTER_LINEAR when growing
    (INTER_AREA degenerates to nearest-neighbour upward).
    """
    h, w = size
    if frame.shape[:2] == (h, w):
        return frame
    shrinking = h * w < frame.shape[0] * frame.shape[1]
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(frame, (w, h), interpolation=interp)


def frame_indices_for_fps(
    src_times: np.ndarray, fps: float, start: float = 0.0, end: float | None = None
) -> np.ndarray:
    """Indices into `src_times` (sorted frame times, s) of the frame nearest each target time.

    Targets are `start + k / fps` for every k with target in `[start, end)`; `end` defaults to the
    end of the last source frame (its time plus the median frame interval). Ties go to the earlier
    frame, so resampling 24 fps -> 8 fps picks frames 0, 3, 6, ... exactly.
    """
    src_times = np.asarray(src_times, dtype=np.float64)
    if src_times.size == 0:
        return np.zeros(0, dtype=np.int64)
    if end is None:
        step = float(np.median(np.diff(src_times))) if src_times.size > 1 else 1.0 / fps
        end = float(src_times[-1]) + step
    n = max(0, math.ceil((end - start) * fps - _TIME_EPS))
    targets = start + np.arange(n) / fps
    # Round distances so float noise cannot break a tie the wrong way; argmin keeps the first.
    dist = np.round(np.abs(src_times[None, :] - targets[:, None]), 9)
    return dist.argmin(axis=1)


def _check_range(p: str, start: float | None, end: float | None) -> None:
    """Reject a request that can return no frames before anything is decoded."""
    if start is not None and start < 0:
        raise VideoError(f"{p}: negative start time {start}")
    if start is not None and end is not None and end <= start:
        raise VideoError(f"{p}: empty time range [{start}, {end})")


def _decode_range(
    container: av.container.InputContainer, stream: av.VideoStream, start: float, end: float | None
) -> Iterator[tuple[float, av.VideoFrame]]:
    """Yield `(time in s from stream start, frame)` for every frame with time in `[start, end)`.

    Seeks to the keyframe at or before `start`, then decodes forward and drops frames by pts, so
    the result is frame-accurate whatever the GOP structure.
    """
    tb = stream.time_base
    origin = stream.start_time or 0
    if start > 0 and tb is not None:
        container.seek(origin + int(start / tb), stream=stream, backward=True, any_frame=False)
    fps = _stream_fps(stream) or 1.0
    for i, frame in enumerate(container.decode(stream)):
        # Frames without pts (rare raw streams) are timed by their order at the nominal rate.
        t = float((frame.pts - origin) * tb) if frame.pts is not None and tb else i / fps
        if t < start - _TIME_EPS:
            continue
        if end is not None and t >= end - _TIME_EPS:
            break
        yield t, frame


_reformatters = threading.local()
_THREADED_DECODE_PIXELS = 256 * 256


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    """Decoded frame -> `(H, W, 3)` uint8 RGB, resized to `size = (H, W)` when given."""
    # One reformatter per thread keeps its swscale context between frames: the same pixels as
    # `frame.to_ndarray(format="rgb24")`, which builds a new context for every frame.
    if not hasattr(_reformatters, "rgb"):
        _reformatters.rgb = VideoReformatter()
    rgb = _reformatters.rgb.reformat(frame, format="rgb24").to_ndarray()
    return resize_frame(rgb, size) if size is not None else rgb


def read_video(
    path: str | os.PathLike,
    start: float | None = None,
    end: float | None = None,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    max_frames: int | None = None,
) -> np.ndarray:
    """Decode frames of `path` in the time range `[start, end)` seconds -> uint8 `(T, H, W, 3)` RGB.

    `fps` resamples by taking, for each target time `start + k / fps`, the nearest source frame
    (so it drops or repeats frames, never blends). `size = (H, W)` resizes each kept frame.
    `max_frames` stops after that many output frames.
    """
    p = os.fspath(path)
    _check_range(p, start, end)
    if fps is not None and fps <= 0:
        raise VideoError(f"{p}: target fps must be positive, got {fps}")
    t0 = start or 0.0
    with _open_video(p) as (container, stream):
        # Frame threads are several-fold faster on HD clips, but starting them costs more than
        # decoding a whole small clip.
        if stream.codec_context.width * stream.codec_context.height >= _THREADED_DECODE_PIXELS:
            stream.thread_type = "AUTO"
        if fps is None:
            out = []
            for _, frame in _decode_range(container, stream, t0, end):
                out.append(_to_rgb(frame, size))
                if max_frames is not None and len(out) >= max_frames:
                    break
        else:
            out = _read_resampled(container, stream, t0, end, fps, size, max_frames)
    if not out:
        raise VideoError(
            f"{p}: no frames in time range [{t0}, {end if end is not None else 'end'})"
        )
    return np.stack(out)


def _read_resampled(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    start: float,
    end: float | None,
    fps: float,
    size: tuple[int, int] | None,
    max_frames: int | None,
) -> list[np.ndarray]:
    """Stream frames of `[start, end)` and keep the one nearest each target time `start + k/fps`.

    Only the previous frame is held, so memory stays O(1) in the clip length, and a frame is
    converted to RGB only if some target picks it (downsampling skips most conversions). A target
    is decided once a frame at or after it arrives: the nearer of that frame and the previous one
    wins, ties to the earlier (same rule as `frame_indices_for_fps`).
    """
    out: list[np.ndarray] = []
    prev: _LazyFrame | None = None
    k = 0

    def target() -> float:
        return start + k / fps

    def full() -> bool:
        return max_frames is not None and len(out) >= max_frames

    for t, frame in _decode_range(container, stream, start, end):
        cur = _LazyFrame(t, frame, size)
        while target() <= t + _TIME_EPS and not full():
            prev_nearer = prev is not None and round(target() - prev.t, 9) <= round(t - target(), 9)
            out.append(prev.rgb() if prev_nearer else cur.rgb())
            k += 1
        if full():
            return out
        prev = cur
    if prev is None:
        return out
    # Targets after the last frame but inside its display interval (and the range) still get it.
    stop = prev.t + 1.0 / (_stream_fps(stream) or fps)
    stop = stop if end is None else min(end, stop)
    while target() < stop - _TIME_EPS and not full():
        out.append(prev.rgb())
        k += 1
    return out


class _LazyFrame:
    """A decoded frame and its time; converted to (resized) RGB once, on first use."""

    def __init__(self, t: float, frame: av.VideoFrame, size: tuple[int, int] | None) -> None:
        self.t, self._frame, self._size = t, frame, size
        self._rgb: np.ndarray | None = None

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = _to_rgb(self._frame, self._size)
        return self._rgb


def _validate_frames(path: str, frames: np.ndarray) -> None:
    """Raise VideoError unless `frames` is a non-empty uint8 `(T, H, W, 3)` array."""
    if not isinstance(frames, np.ndarray):
        raise VideoError(f"{path}: frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise VideoError(f"{path}: frames must be uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VideoError(f"{path}: frames must have shape (T, H, W, 3), got {frames.shape}")
    if 0 in frames.shape:
        raise VideoError(f"{path}: frames must be non-empty, got shape {frames.shape}")


def pad_to_even(frames: np.ndarray) -> np.ndarray:
    """Pad `(T, H, W, C)` by repeating the last row/column so H and W are even.

    4:2:0 chroma subsampling (yuv420p, what every player expects from H.264) needs even sizes.
    Edge replication adds one row/column that looks like its neighbour, instead of a black line.
    """
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    crf: int = 12,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode uint8 `(T, H, W, 3)` RGB frames to `path` (H.264 mp4 by default); returns the path.

    Odd H or W is padded by one replicated row/column for yuv420p (see `pad_to_even`), so the file
    is `(H + H % 2, W + W % 2)`. crf 12 is visually lossless for our flat-coloured content.
    """
    p = os.fspath(path)
    _validate_frames(p, frames)
    if not fps > 0:
        raise VideoError(f"{p}: fps must be positive, got {fps}")
    if pix_fmt in ("yuv420p", "nv12"):
        frames = pad_to_even(frames)
    rate = Fraction(fps).limit_denominator(1001)  # 29.97 -> 30000/1001 exactly
    with atomic_path(p) as tmp:
        try:
            with av.open(str(tmp), "w") as container:
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height = frames.shape[2], frames.shape[1]
                stream.pix_fmt = pix_fmt
                if codec in ("libx264", "libx265"):
                    stream.options = {"crf": str(crf)}
                for i, rgb in enumerate(frames):
                    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                    frame.pts = i
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))  # flush the encoder's delayed frames
        except (av.FFmpegError, ValueError) as e:
            raise VideoError(f"{p}: encoding with {codec}/{pix_fmt} failed: {e}") from e
    return Path(p)


def _cell_centres(cell_ids: np.ndarray) -> np.ndarray:
    """Centre RGB (int32, `(N, 3)`) of 5-bit-per-channel grid cells packed as `r << 10 | g << 5 | b`."""
    rgb = np.stack([cell_ids >> 10, (cell_ids >> 5) & 31, cell_ids & 31], axis=1)
    return (rgb * 8 + 4).astype(np.int32)


def gif_palette(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One 256-colour palette for a whole clip -> `(indices (T, H, W) uint8, palette (256, 3))`.

    Clips with at most 256 distinct colours (the shapes world has 2-3) keep them exactly.
    Otherwise: popularity quantisation, the 256 most frequent colours on a 5-bit-per-channel grid,
    each grid cell mapped to its nearest palette entry; O(pixels), good enough for previews.
    """
    flat = frames.reshape(-1, 3).astype(np.int32)
    packed = (flat[:, 0] << 16) | (flat[:, 1] << 8) | flat[:, 2]  # 1D: np.unique is fast on it
    colors, inverse = np.unique(packed, return_inverse=True)
    if len(colors) <= 256:
        palette = np.zeros((256, 3), np.uint8)
        palette[: len(colors)] = np.stack([colors >> 16, (colors >> 8) & 255, colors & 255], 1)
        return inverse.reshape(frames.shape[:3]).astype(np.uint8), palette
    cell = flat >> 3
    cell_id = (cell[:, 0] << 10) | (cell[:, 1] << 5) | cell[:, 2]
    counts = np.bincount(cell_id, minlength=1 << 15)
    top = np.argsort(counts)[::-1][:256]
    palette = _cell_centres(top)
    used = np.flatnonzero(counts)  # only occupied cells need a palette entry
    lut = np.zeros(1 << 15, np.uint8)
    for chunk in range(0, len(used), 4096):  # chunked so the distance matrix stays ~12 MB
        ids = used[chunk : chunk + 4096]
        d = ((_cell_centres(ids)[:, None, :] - palette[None]) ** 2).sum(-1)
        lut[ids] = d.argmin(1)
    return lut[cell_id].reshape(frames.shape[:3]), palette.astype(np.uint8)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float) -> Path:
    """Write uint8 `(T, H, W, 3)` RGB frames as a looping GIF with one shared palette."""
    p = os.fspath(path)
    _validate_frames(p, frames)
    if not fps > 0:
        raise VideoError(f"{p}: fps must be positive, got {fps}")
    indices, palette = gif_palette(frames)
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), palette], axis=1)
    # GIF delays are in 1/100 s, so a rate like 8 fps is stored as 12-13 cs per frame.
    rate = Fraction(fps).limit_denominator(100)
    with atomic_path(p) as tmp:
        try:
            with av.open(str(tmp), "w", format="gif", container_options={"loop": "0"}) as container:
                stream = container.add_stream("gif", rate=rate)
                stream.width, stream.height = frames.shape[2], frames.shape[1]
                stream.pix_fmt = "pal8"
                for i, idx in enumerate(indices):
                    frame = av.VideoFrame.from_ndarray(
                        (np.ascontiguousarray(idx), argb), format="pal8"
                    )
                    frame.pts = i
                    container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
        except (av.FFmpegError, ValueError) as e:
            raise VideoError(f"{p}: GIF encoding failed: {e}") from e
    return Path(p)


def _sheet_cell(frame: np.ndarray, cell_h: int, cell_w: int, scale: int) -> np.ndarray:
    """Nearest-neighbour upscale `frame` by `scale` and place it top-left on a black cell."""
    big = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    cell = np.zeros((cell_h, cell_w, 3), np.uint8)
    cell[: big.shape[0], : big.shape[1]] = big
    return cell


def contact_sheet(
    path: str | os.PathLike,
    videos: list[np.ndarray],
    labels: list[str] | None = None,
    frames_per_video: int = 5,
    scale: int = 2,
) -> np.ndarray:
    """Write a PNG grid (one row per video, evenly spaced frames as columns); returns it as RGB.

    `videos` are uint8 `(T, H, W, 3)` arrays, possibly of different sizes (each cell is the largest
    `H x W` times `scale`; smaller frames sit top-left on black). Upscaling is nearest-neighbour
    so single pixels of 64x64 samples stay visible. `labels[i]` is drawn in a strip above row i.
    Output `(rows * (label_h + cell_h + gap) + gap, cols * (cell_w + gap) + gap, 3)`.
    """
    p = os.fspath(path)
    if not videos:
        raise VideoError(f"{p}: contact sheet needs at least one video")
    if labels is not None and len(labels) != len(videos):
        raise VideoError(f"{p}: {len(labels)} labels for {len(videos)} videos")
    for v in videos:
        _validate_frames(p, v)
    gap, label_h = 2, (16 if labels is not None else 0)
    cell_h = max(v.shape[1] for v in videos) * scale
    cell_w = max(v.shape[2] for v in videos) * scale
    cols = frames_per_video
    sheet = np.full(
        (len(videos) * (label_h + cell_h + gap) + gap, cols * (cell_w + gap) + gap, 3), 32, np.uint8
    )
    for r, video in enumerate(videos):
        y = gap + r * (label_h + cell_h + gap)
        if labels is not None:
            # Hershey fonts are ASCII-only; anything else would print as '?'.
            text = labels[r].encode("ascii", "replace").decode()
            cv2.putText(
                sheet, text, (gap, y + label_h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                (255, 255, 255), 1, cv2.LINE_AA,
            )  # fmt: skip
        picks = np.linspace(0, len(video) - 1, cols).round().astype(int)
        for c, t in enumerate(picks):
            x = gap + c * (cell_w + gap)
            sheet[y + label_h : y + label_h + cell_h, x : x + cell_w] = _sheet_cell(
                video[t], cell_h, cell_w, scale
            )
    with atomic_path(p) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise VideoError(f"{p}: could not write PNG")
    return sheet
