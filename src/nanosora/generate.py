"""`nanosora generate`: prompts (and optionally a first image or a clip to continue) -> mp4 files.

The pipeline itself (sampling, loading, saving) is ``nanosora.pipeline``; this module adds what
the command needs around it: reading and fitting the conditioning frames, prompt warnings, and
writing the videos.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from nanosora.pipeline import Pipeline, check_prompt, replace_cfg
from nanosora.video.io import read_video, write_video


def prepare_frames(frames: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    """Image(s) of any common layout -> uint8 RGB (K, height, width, 3), with printed notices.

    Accepts (H, W), (H, W, C) or (K, H, W, C) with C in 1, 3, 4 (alpha is dropped); other sizes
    are resized with area interpolation. ``name`` is used in messages.
    """
    import cv2

    a = np.asarray(frames)
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected 8-bit pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected (H, W[, C]) or (K, H, W, C) pixels, got {a.shape}")
    if a.shape[-1] == 1:
        print(f"notice: {name} is greyscale; converted to RGB")
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        print(f"notice: {name} has an alpha channel; dropped")
        a = a[..., :3]
    if a.shape[1:3] != (height, width):
        print(f"notice: {name} is {a.shape[2]}x{a.shape[1]}; resized to {width}x{height}")
        a = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in a])
    return np.ascontiguousarray(a)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> uint8 (H, W, C) RGB(A) or (H, W) grey; a clear error when unreadable."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{p} is not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        print(f"notice: {p} has 16-bit pixels; scaled to 8 bits")
        img = (img // 257).astype(np.uint8)
    if img.ndim == 3 and img.shape[-1] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[-1] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def main(
    prompts: list[str],
    out: str | Path,
    model: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    cfg_scale: float | None = None,
    num_frames: int | None = None,
    batch_size: int = 8,
    image: str | Path | None = None,
    video: str | Path | None = None,
    extend: int = 0,
    lora: str | Path | None = None,
    eta: float | None = None,
) -> Path:
    """Generate one video per prompt. One prompt -> ``out`` is the mp4; several -> ``out`` is a folder.

    ``image``: animate that first frame (image-to-video); ``video`` + ``extend``: continue the
    clip by ``extend`` frames (the written video is the clip followed by the new frames).
    """
    pipe = replace_cfg(Pipeline.load(model, lora), eta=eta)
    c = pipe.cfg
    for p in prompts:
        for w in check_prompt(p, c.vocabulary):
            print(f"warning: {w}")
    prefix = None
    if image is not None:
        prefix = prepare_frames(read_image(image), c.height, c.width, str(image))
    out = Path(out)
    paths = [out] if len(prompts) == 1 else [out / f"{i:04d}.mp4" for i in range(len(prompts))]
    t0 = time.time()
    if video is not None:
        clip = prepare_frames(read_video(video, fps=c.fps), c.height, c.width, str(video))
        for i, (path, p) in enumerate(zip(paths, prompts)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, pipe.extend(p, clip, extend, seed + i, steps, cfg_scale), fps=c.fps)
        print(f"wrote {len(paths)} video(s) to {out} in {time.time() - t0:.2f}s")
        return out
    for lo in range(0, len(prompts), batch_size):
        videos = pipe.generate(
            prompts[lo : lo + batch_size], seed + lo, steps, cfg_scale, num_frames, prefix=prefix
        )
        for path, v in zip(paths[lo : lo + batch_size], videos):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, v, fps=pipe.cfg.fps)
    print(f"wrote {len(paths)} video(s) to {out} in {time.time() - t0:.2f}s")
    return out
