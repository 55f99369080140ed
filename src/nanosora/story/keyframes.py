"""Keyframes: one still per shot, drawn by nanosora's own model or supplied by the user.

The model draws a keyframe as a one-frame video: with the causal VAE a single frame is encoded
like an image (DESIGN.md section 2, 4k+1 frames with k = 0), so text-to-image is text-to-video
with `num_frames=1`. User keyframes come from the shot's `keyframe` field or from a folder with
one image per shot, named after the shot id (`s01.png`, `s01.jpg`, ...). With image-to-video
animation the keyframe is the clip's first frame: `load_keyframe` brings any image to the
pipeline's size and pixel format, with a notice naming the shot when it converts.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from nanosora.atomic import atomic_path
from nanosora.generate import prepare_frames
from nanosora.generate import read_image as read_any
from nanosora.pipeline import Pipeline
from nanosora.story.schema import Shot, StoryError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def generate_keyframes(
    pipe: Pipeline, prompts: list[str], seeds: list[int], steps: int | None = None,
    cfg_scale: float | None = None,
) -> list[np.ndarray]:  # fmt: skip
    """One uint8 `(H, W, 3)` still per prompt, by single-frame generation (batched)."""
    videos = pipe.generate(prompts, steps=steps, cfg_scale=cfg_scale, num_frames=1, seeds=seeds)
    return [v[0] for v in videos]  # (B, 1, H, W, C) -> B x (H, W, C)


def find_user_keyframe(shot: Shot, folder: Path | None, base: Path) -> Path | None:
    """The user's image for `shot`: its `keyframe` field (relative to `base`), else FOLDER/<id>.*."""
    if shot.keyframe:
        p = Path(shot.keyframe)
        p = p if p.is_absolute() else base / p
        if not p.is_file():
            raise StoryError(f"shot {shot.id!r}: keyframe {p} does not exist")
        return p
    if folder is None:
        return None
    for suffix in IMAGE_SUFFIXES:
        for name in (shot.id + suffix, shot.id + suffix.upper()):
            if (folder / name).is_file():
                return folder / name
    return None


def read_image(path: str | os.PathLike, shot_id: str) -> np.ndarray:
    """Decode an image file -> uint8 `(H, W, 3)` RGB; StoryError naming the shot if it is not one.

    Other pixel formats (grey, alpha, 16-bit) are converted with a printed notice; the size is kept.
    """
    p = Path(path)
    try:
        img = read_any(p)
    except (OSError, ValueError):
        raise StoryError(
            f"shot {shot_id!r}: keyframe {p} is not a readable image (PNG, JPEG, WebP or BMP)"
        ) from None
    return prepare_frames(img, img.shape[0], img.shape[1], f"shot {shot_id!r} keyframe {p}")[0]


def load_keyframe(path: Path, shot_id: str, height: int, width: int) -> np.ndarray:
    """A shot's keyframe as the pipeline's first frame: uint8 `(height, width, 3)` RGB.

    A keyframe of another size (a user's image) is resized with a notice naming the shot.
    """
    if not path.is_file():
        raise StoryError(
            f"shot {shot_id!r}: no keyframe {path} to animate (see the keyframe error)"
        )

    name = f"shot {shot_id!r} keyframe {path}"
    return prepare_frames(read_image(path, shot_id), height, width, name)[0]


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write uint8 `(H, W, 3)` RGB as PNG atomically (a resumed run trusts existing files)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR))
    if not ok:
        raise StoryError(f"{p}: could not encode PNG")
    with atomic_path(p) as tmp:
        tmp.write_bytes(buf.tobytes())
    return p
