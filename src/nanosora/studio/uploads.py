"""Uploaded images and clips: checked, decoded and fitted to the model, or refused with why.

The checks run before any decoding that could be costly: the size in bytes, the type (by the
name's suffix, then by decoding), and the picture's dimensions read from the header alone, so a
small file that would decompress to gigabytes is refused too. The user's file name is only
shown in messages; the studio keeps the fitted frames under their content digest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanosora.generate import prepare_frames, read_image
from nanosora.studio.store import StudioError
from nanosora.video.io import VideoError, probe, read_video

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CLIP_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif")
MAX_SIDE = 4096  # px: larger pictures are refused before they are decoded
MAX_CLIP_FRAMES = 129  # frames at the model's rate (16 s at 8 fps); a clip to extend, not a film


@dataclass(frozen=True)
class Upload:
    """An accepted upload."""

    kind: str  # "image" or "clip"
    frames: np.ndarray  # uint8 (K, H, W, 3) at the model's size; K = 1 for an image
    digest: str  # first 16 hex digits of the file's SHA-256
    name: str  # the name as the user gave it, for messages and the gallery only


def shown(name: str) -> str:
    """A user's file name as messages show it: the last part, at most 60 characters, quoted."""
    base = Path(str(name).replace("\\", "/")).name or "the upload"
    return repr(base if len(base) <= 60 else base[:57] + "...")


def read_upload(path: str | Path, name: str, max_bytes: int, height: int, width: int,
                fps: float) -> Upload:  # fmt: skip
    """Check and decode the uploaded file at ``path`` (the server's copy; ``name`` is the user's)."""
    path = Path(path)
    who = shown(name)
    size = path.stat().st_size
    if size > max_bytes:
        raise StudioError(
            f"{who} is {size / 2**20:.1f} MB; the studio takes uploads up to {max_bytes / 2**20:g} MB"
        )
    if size == 0:
        raise StudioError(f"{who} is empty")
    suffix = Path(str(name)).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        kind, frames = "image", _image(path, who)
    elif suffix in CLIP_SUFFIXES:
        kind, frames = "clip", _clip(path, who, fps)
    else:
        raise StudioError(
            f"{who}: {suffix or 'no suffix'} is not a type the studio takes; upload an image "
            f"({', '.join(IMAGE_SUFFIXES)}) or a clip ({', '.join(CLIP_SUFFIXES)})"
        )
    try:
        fitted = prepare_frames(frames, height, width, who)
    except ValueError as e:
        raise StudioError(str(e)) from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Upload(kind, fitted, digest, str(name))


def _too_large(who: str, width: int, height: int) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise StudioError(f"{who} is {width}x{height}; the studio takes up to {MAX_SIDE} px a side")


def _image(path: Path, who: str) -> np.ndarray:
    """An image's pixels, after reading its size from the header."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:  # reads the header only
            _too_large(who, *im.size)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        raise StudioError(f"{who} is not a readable image (corrupt or not an image)") from None
    try:
        return read_image(path)
    except ValueError:
        raise StudioError(f"{who} is not a readable image (corrupt or not an image)") from None


def _clip(path: Path, who: str, fps: float) -> np.ndarray:
    """A clip's frames at the model's rate, after reading its size and length from the header."""
    try:
        info = probe(path)
        _too_large(who, info.width, info.height)
        if info.duration * fps > MAX_CLIP_FRAMES + 1:
            raise StudioError(
                f"{who} lasts {info.duration:.1f} s; the studio extends clips of up to "
                f"{MAX_CLIP_FRAMES / fps:g} s"
            )
        return read_video(path, fps=fps, max_frames=MAX_CLIP_FRAMES)
    except VideoError:
        raise StudioError(f"{who} is not a readable video (corrupt or not a video)") from None
