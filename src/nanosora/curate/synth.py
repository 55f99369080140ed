"""Synthetic curation inputs built from the shapes world: multi-scene videos with real cuts.

Tests and ``bench/curate.py`` need videos that exercise every decision of a recipe without any
download: several shapes clips concatenated (hard cuts between different objects and colours),
upscaled so decoding and optical flow cost what they cost on real footage, and a controlled mix
of clips that a typical recipe drops: too short, too wide, static black.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from nanosora.shapes.world import clip_rng, render, sample_spec
from nanosora.video.io import write_video

KINDS = ("multi", "short", "wide", "black")
# Dark backgrounds of well-separated hues: consecutive scenes always differ in hue.
BACKGROUNDS = ((20, 30, 110), (110, 60, 10), (20, 90, 30), (100, 20, 90), (90, 90, 20))


def scene_frames(seed: int, index: int, scenes: int, scale: int, repeat: int) -> np.ndarray:
    """``scenes`` shapes clips (each frame shown ``repeat`` times), upscaled ``scale``x, joined.

    Returns uint8 ``(T, 64 * scale, 64 * scale, 3)`` with ``T = scenes * 17 * repeat``.
    """
    clips = []
    for s in range(scenes):
        frames = render(sample_spec(clip_rng(seed, index * 16 + s), "all"))
        # A coloured background per scene makes the cut visible to content detectors (a black
        # background with one small object changes too little between scenes).
        background = np.array(BACKGROUNDS[(index + s) % len(BACKGROUNDS)], np.uint8)
        frames = np.where((frames == 0).all(-1, keepdims=True), background, frames)
        clips.append(np.repeat(frames, repeat, axis=0))
    video = np.concatenate(clips)
    return video.repeat(scale, axis=1).repeat(scale, axis=2)


def make_video(
    path: Path, kind: str, seed: int, index: int, scale: int = 4, fps: float = 24.0
) -> None:
    """Write one video of ``kind`` (``KINDS``): multi (3 scenes, ~6.4 s), short (1 scene, 2.1 s),
    wide (3 scenes cropped to 3:1), black (6 s of black)."""
    match kind:
        case "multi":
            frames = scene_frames(seed, index, 3, scale, 3)
        case "short":
            frames = scene_frames(seed, index, 1, scale, 3)
        case "wide":
            frames = scene_frames(seed, index, 3, scale, 3)
            h = frames.shape[2] // 3
            frames = np.ascontiguousarray(frames[:, :h])
        case "black":
            frames = np.zeros((144, 64 * scale, 64 * scale, 3), np.uint8)
        case _:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    write_video(path, frames, fps=fps, crf=23)


def make_dataset(out_dir: str | os.PathLike, num: int, seed: int = 0, scale: int = 4,
                 mix: tuple[str, ...] = ("multi", "multi", "short", "multi", "wide", "black",
                                         "multi", "multi")) -> Path:  # fmt: skip
    """``num`` videos cycling through ``mix`` + ``manifest.jsonl``; returns the manifest path."""
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(num):
        kind = mix[i % len(mix)]
        path = out / "videos" / f"{i:04d}_{kind}.mp4"
        if not path.exists():
            make_video(path, kind, seed, i, scale)
        rows.append({"path": f"videos/{path.name}", "text": f"a {kind} test video number {i}",
                     "kind": kind})  # fmt: skip
    manifest = out / "manifest.jsonl"
    pd.DataFrame(rows).to_json(manifest, orient="records", lines=True, force_ascii=False)
    return manifest
