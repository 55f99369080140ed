"""Draw docs/strip.png: frames of clips the shipped shapes model generates, one prompt per row.

    .venv/bin/python scripts/make_strip.py [--out docs/strip.png] [--seed 0]

Each clip comes from `nanosora generate` (the shipped model, its default sampler); the label of
a row names the prompt, whether its composition was held out of training, and what the probe
reads back from the generated file.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import cv2
import numpy as np

from nanosora.shapes import HELD_OUT, parse_prompt, probe_video
from nanosora.video.io import read_video

PROMPTS = (
    "a red circle moving left",
    "a green square moving up",
    "a yellow triangle moving right",  # held out of training
    "a white circle moving right",  # held out of training
)
FRAMES = (0, 4, 8, 12, 16)  # of the 17 generated frames
SCALE = 2  # 64 px frames drawn at 128 px, nearest neighbour
LABEL_W, GAP = 330, 4


def label(prompt: str, path: Path) -> list[str]:
    """Two lines: the prompt, then held-out or not and the probe's reading of the clip."""
    colour, shape, direction = parse_prompt(prompt)
    held = "held-out composition" if (colour, shape, direction) in HELD_OUT else "seen in training"
    r = probe_video(path)
    reading = f"{r.color} {r.shape} {r.direction}"
    return [prompt, f"{held}; probe reads: {reading}"]


def draw(clips: list[tuple[list[str], np.ndarray]]) -> np.ndarray:
    """Rows of (label lines, frames (T, H, W, 3) uint8) -> one RGB image."""
    h, w = clips[0][1].shape[1:3]
    cell_h, cell_w = h * SCALE, w * SCALE
    width = LABEL_W + len(FRAMES) * (cell_w + GAP)
    canvas = np.full((len(clips) * (cell_h + GAP) + GAP, width, 3), 255, np.uint8)
    for i, (lines, frames) in enumerate(clips):
        y = GAP + i * (cell_h + GAP)
        for j, line in enumerate(lines):
            size = 0.5 if j == 0 else 0.4
            cv2.putText(
                canvas,
                line,
                (8, y + cell_h // 2 - 6 + 22 * j),
                cv2.FONT_HERSHEY_SIMPLEX,
                size,
                (20, 20, 20) if j == 0 else (90, 90, 90),
                1,
                cv2.LINE_AA,
            )
        for k, f in enumerate(FRAMES):
            x = LABEL_W + k * (cell_w + GAP)
            canvas[y : y + cell_h, x : x + cell_w] = cv2.resize(
                frames[f], (cell_w, cell_h), interpolation=cv2.INTER_NEAREST
            )
    return canvas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/strip.png"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    nanosora = shutil.which("nanosora") or str(Path(".venv/bin/nanosora"))
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS) + "\n")
        videos = Path(tmp) / "videos"
        subprocess.run(
            [nanosora, "generate", "--prompts", str(prompts), "-o", str(videos)]
            + ["--seed", str(args.seed)],
            check=True,
        )
        paths = [videos / f"{i:04d}.mp4" for i in range(len(PROMPTS))]
        clips = [(label(p, path), read_video(path)) for p, path in zip(PROMPTS, paths)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image = draw(clips)
    cv2.imwrite(
        str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9]
    )
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}, {args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
