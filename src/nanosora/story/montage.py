"""Montage: shot clips -> one H.264 film with title and end cards, cuts or cross-fades,
subtitles (an `.srt` sidecar, optionally burned in) and an optional audio track.

1. `plan_timeline` places every segment (title card, shots, end card) on the film's frame grid:
   a shot lasts its `duration`, and a `fade` transition overlaps it with the previous segment
   by `fade` seconds (a cross-fade shortens the film; a cut does not);
2. each clip is retimed to its duration (nearest source frame, so motion is never blended) and
   letterboxed to the common resolution;
3. `compose` streams the frames, blending the overlaps, into the encoder; only one segment and
   the frames a coming fade still needs are held in memory;
4. the audio file, if any, is decoded, resampled to 48 kHz stereo, trimmed to the film with a
   short fade-out (no click at the cut), encoded as AAC and interleaved with the video.

Cards and burned subtitles use OpenCV's Hershey fonts, which draw ASCII only: accents are
stripped and other scripts are dropped there; the `.srt` keeps the full text.
"""

from __future__ import annotations

import os
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from nanosora.atomic import atomic_path
from nanosora.story.schema import Shot, StoryError
from nanosora.video.io import read_video, resize_frame

AUDIO_RATE = 48_000
AUDIO_FADE_OUT = 0.3  # seconds
FONT = cv2.FONT_HERSHEY_DUPLEX


@dataclass(frozen=True)
class MontageConfig:
    """How the film is cut and encoded."""

    width: int = 256  # film frame width (even: H.264 4:2:0)
    height: int = 256  # film frame height (even)
    fps: float = 24.0  # film frame rate; clips are retimed to it
    fade: float = 0.5  # cross-fade length (s) into shots whose transition is 'fade'
    title_seconds: float = 2.0  # title card (0: none)
    end_seconds: float = 1.5  # end card (0: none)
    end_text: str = "THE END"
    burn_subtitles: bool = False  # also draw subtitles into the frames
    audio: str = ""  # audio file to lay under the film (any format FFmpeg reads)
    crf: int = 18  # libx264 quality

    def __post_init__(self) -> None:
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise StoryError(f"film size must be even and >= 16, got {self.width}x{self.height}")
        if not self.fps > 0 or self.fade < 0 or self.title_seconds < 0 or self.end_seconds < 0:
            raise StoryError("fps must be > 0; fade, title and end seconds >= 0")


@dataclass(frozen=True)
class Placement:
    """Where one segment sits in the film, in frames."""

    kind: str  # "title", "shot" or "end"
    shot: int  # index into the shot list (-1 for cards)
    start: int  # first frame
    frames: int  # length, including the cross-fade into it
    fade_in: int  # frames overlapping the previous segment


def plan_timeline(shots: list[Shot], cfg: MontageConfig) -> list[Placement]:
    """Place title card, shots and end card on the film's frame grid (module docstring, step 1)."""
    wanted: list[tuple[str, int, float, bool]] = []
    if cfg.title_seconds > 0:
        wanted.append(("title", -1, cfg.title_seconds, False))
    wanted += [("shot", i, s.duration, s.transition == "fade") for i, s in enumerate(shots)]
    if cfg.end_seconds > 0:
        wanted.append(("end", -1, cfg.end_seconds, True))
    out: list[Placement] = []
    for kind, index, seconds, fades in wanted:
        n = max(1, round(seconds * cfg.fps))
        fade = 0
        if fades and out:  # a fade needs a previous segment, and cannot outlast either side
            fade = max(0, min(round(cfg.fade * cfg.fps), out[-1].frames - 1, n - 1))
        start = out[-1].start + out[-1].frames - fade if out else 0
        out.append(Placement(kind, index, start, n, fade))
    return out


def ascii_text(text: str) -> str:
    """What Hershey fonts can draw: accents stripped, other non-ASCII characters dropped."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(plain.split())


def wrap(text: str, scale: float, thickness: int, max_width: int) -> list[str]:
    """Greedy word wrap so each line fits `max_width` pixels at this font scale."""
    lines: list[str] = []
    for word in ascii_text(text).split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, FONT, scale, thickness)[0][0] <= max_width:
            lines[-1] = trial
        else:
            lines.append(word)
    return lines


def _put_lines(img: np.ndarray, lines: list[str], scale: float, thickness: int, top: int,
               outline: bool = False) -> int:  # fmt: skip
    """Draw centred lines from y = `top`; returns the y below the last line."""
    y = top
    for line in lines:
        (w, h), base = cv2.getTextSize(line, FONT, scale, thickness)
        x, y = (img.shape[1] - w) // 2, y + h
        if outline:  # a black outline keeps white text readable on any frame
            cv2.putText(img, line, (x, y), FONT, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.putText(img, line, (x, y), FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)
        y += base + h // 2
    return y


def draw_card(title: str, subtitle: str, width: int, height: int) -> np.ndarray:
    """A black card with a large centred title and a smaller wrapped line under it."""
    img = np.zeros((height, width, 3), np.uint8)
    big, small = width / 320, width / 640  # Hershey scale 1.0 is ~22 px tall
    t_lines = wrap(title, big, max(1, round(big * 1.5)), int(width * 0.9))
    s_lines = wrap(subtitle, small, 1, int(width * 0.85))[:4]
    line_h = cv2.getTextSize("Ag", FONT, big, 1)[0][1] * 1.6
    block = len(t_lines) * line_h + len(s_lines) * line_h * 0.5
    y = _put_lines(img, t_lines, big, max(1, round(big * 1.5)), int((height - block) / 2))
    _put_lines(img, s_lines, small, 1, y + int(line_h * 0.3))
    return img


def burn_subtitle(frame: np.ndarray, text: str) -> np.ndarray:
    """`frame` with `text` (at most 2 wrapped lines) drawn near the bottom."""
    h, w = frame.shape[:2]
    scale = max(0.4, w / 560)  # Hershey text below ~0.4 is unreadable
    lines = wrap(text, scale, 1, int(w * 0.92))[:2]
    line_h = cv2.getTextSize("Ag", FONT, scale, 1)[0][1] * 1.5
    out = frame.copy()
    _put_lines(out, lines, scale, 1, int(h - 0.05 * h - len(lines) * line_h), outline=True)
    return out


def fit_frame(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize keeping the aspect ratio, centred on black (letterbox or pillarbox)."""
    h, w = frame.shape[:2]
    k = min(width / w, height / h)
    nh, nw = max(1, round(h * k)), max(1, round(w * k))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - nh) // 2, (width - nw) // 2
    out[y : y + nh, x : x + nw] = resize_frame(frame, (nh, nw))
    return out


def retime(clip: np.ndarray, frames: int) -> np.ndarray:
    """Stretch or squeeze `clip` (T, H, W, 3) to `frames` frames by picking the nearest frame."""
    idx = np.minimum(((np.arange(frames) + 0.5) * len(clip) / frames).astype(int), len(clip) - 1)
    return clip[idx]


def compose(segments: list[tuple[Callable[[], np.ndarray], int]]) -> Iterator[np.ndarray]:
    """Stream the film's frames from `(load frames, fade-in frames)` segments, blending overlaps."""
    tail: deque[np.ndarray] = deque()
    for k, (load, fade) in enumerate(segments):
        frames = load()
        for j in range(fade):
            a = (j + 1) / (fade + 1)  # strictly between 0 and 1: both shots visible in the blend
            i = len(tail) - fade + j
            tail[i] = (
                ((1 - a) * tail[i].astype(np.float32) + a * frames[j]).round().astype(np.uint8)
            )
        tail.extend(frames[fade:])
        keep = segments[k + 1][1] if k + 1 < len(segments) else 0  # what the next fade blends into
        while len(tail) > keep:
            yield tail.popleft()


def srt_time(seconds: float) -> str:
    """SubRip timestamp HH:MM:SS,mmm."""
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def subtitle_cues(
    shots: list[Shot], timeline: list[Placement], fps: float
) -> list[tuple[float, float, str]]:
    """(start s, end s, text) per shot with a caption; a cue ends where the next segment fades in."""
    cues = []
    for k, p in enumerate(timeline):
        if p.kind != "shot" or not shots[p.shot].caption:
            continue
        nxt = timeline[k + 1].fade_in if k + 1 < len(timeline) else 0
        cues.append((p.start / fps, (p.start + p.frames - nxt) / fps, shots[p.shot].caption or ""))
    return cues


def write_srt(path: str | os.PathLike, cues: list[tuple[float, float, str]]) -> Path:
    """Write SubRip cues (UTF-8)."""
    blocks = [
        f"{i}\n{srt_time(a)} --> {srt_time(b)}\n{text}\n" for i, (a, b, text) in enumerate(cues, 1)
    ]
    p = Path(path)
    p.write_text("\n".join(blocks), encoding="utf-8")
    return p


def read_audio(path: str | os.PathLike, seconds: float) -> np.ndarray:
    """Decode an audio file -> float32 `(2, n)` at 48 kHz, at most `seconds` long, faded out."""
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise StoryError(f"audio file {p} does not exist")
    try:
        with av.open(p) as src:
            if not src.streams.audio:
                raise StoryError(f"audio file {p} has no audio stream")
            res = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE)
            chunks = [f.to_ndarray() for frame in src.decode(audio=0) for f in res.resample(frame)]
            chunks += [f.to_ndarray() for f in res.resample(None)]
    except av.FFmpegError as e:
        raise StoryError(f"audio file {p} cannot be decoded: {e}") from None
    if not chunks:
        raise StoryError(f"audio file {p} has no samples")
    pcm = np.concatenate(chunks, axis=1)[:, : int(seconds * AUDIO_RATE)].astype(np.float32)
    n = min(pcm.shape[1], int(AUDIO_FADE_OUT * AUDIO_RATE))
    pcm[:, pcm.shape[1] - n :] *= np.linspace(1, 0, n, dtype=np.float32)
    return pcm


def _audio_packets(stream: av.AudioStream, pcm: np.ndarray) -> list[av.Packet]:
    """Encode `(2, n)` float PCM to AAC packets (the encoder re-chunks to its frame size)."""
    packets = []
    for off in range(0, pcm.shape[1], 4096):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, off : off + 4096]),
                                           format="fltp", layout="stereo")  # fmt: skip
        frame.sample_rate, frame.pts = AUDIO_RATE, off
        packets += stream.encode(frame)
    return packets + stream.encode(None)


def encode_film(path: str | os.PathLike, frames: Iterable[np.ndarray], cfg: MontageConfig,
                seconds: float) -> Path:  # fmt: skip
    """H.264 mp4 (+ AAC when `cfg.audio`) from uint8 RGB frames; written atomically."""
    pcm = read_audio(cfg.audio, seconds) if cfg.audio else None
    with atomic_path(path) as tmp:
        # faststart puts the index first, so the storyboard page can play the film while loading.
        with av.open(str(tmp), "w", container_options={"movflags": "+faststart"}) as out:
            vs = out.add_stream("libx264", rate=Fraction(cfg.fps).limit_denominator(1001))
            vs.width, vs.height, vs.pix_fmt = cfg.width, cfg.height, "yuv420p"
            vs.options = {"crf": str(cfg.crf)}
            audio = (
                out.add_stream("aac", rate=AUDIO_RATE, layout="stereo") if pcm is not None else None
            )
            pending = deque(
                _audio_packets(audio, pcm) if audio is not None and pcm is not None else []
            )
            for i, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = i
                out.mux(vs.encode(frame))
                # Interleave: audio up to the current video time, so players need no big buffers.
                while (
                    pending
                    and pending[0].pts is not None
                    and pending[0].pts <= (i + 1) * AUDIO_RATE / cfg.fps
                ):
                    out.mux(pending.popleft())
            out.mux(vs.encode(None))
            out.mux(list(pending))
    return Path(path)


def make_film(
    shots: list[Shot], clips: list[Path], title: str, logline: str, out: str | os.PathLike,
    cfg: MontageConfig,
) -> tuple[Path, Path]:  # fmt: skip
    """Cut `clips` (one mp4 per shot) into the film at `out`; returns (film, .srt sidecar)."""
    if len(clips) != len(shots):
        raise StoryError(f"{len(clips)} clips for {len(shots)} shots")
    timeline = plan_timeline(shots, cfg)
    cues = subtitle_cues(shots, timeline, cfg.fps)
    captions = {shots[p.shot].id: shots[p.shot].caption for p in timeline if p.kind == "shot"}

    def loader(p: Placement) -> Callable[[], np.ndarray]:
        def load() -> np.ndarray:
            if p.kind != "shot":
                text = (title, logline) if p.kind == "title" else (cfg.end_text, title)
                return np.repeat(draw_card(*text, cfg.width, cfg.height)[None], p.frames, axis=0)
            shot = shots[p.shot]
            frames = [
                fit_frame(f, cfg.width, cfg.height)
                for f in retime(read_video(clips[p.shot]), p.frames)
            ]
            if cfg.burn_subtitles and captions[shot.id]:
                frames = [burn_subtitle(f, captions[shot.id] or "") for f in frames]
            return np.stack(frames)

        return load

    seconds = (timeline[-1].start + timeline[-1].frames) / cfg.fps
    film = encode_film(out, compose([(loader(p), p.fade_in) for p in timeline]), cfg, seconds)
    srt = write_srt(Path(out).with_suffix(".srt"), cues)
    return film, srt
