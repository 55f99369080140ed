"""Scenes world: generation speed in memory (target: >= 200 clips/s) and the size sweep
that fixes the smallest object sizes.

1. speed: sample + caption + render clips in memory, per category and over all categories in
   turn; peer: today's one-object generator (`world.sample_spec` + `world.render`), same run;
2. sizes: objects of 7-14 px, still and spinning, written as mp4 (libx264, crf 12) and read back
   by the grader: the share of detections whose colour and shape are both right, per side. The
   world uses sides where this is >= 99% (docs/scenes.md).

    OMP_NUM_THREADS=1 python bench/scenes.py [--clips 2000] [--sweep 60]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from nanosora.shapes import grader, scenes, world
from nanosora.shapes.grammar import CATEGORIES, Composition, Thing
from nanosora.video.io import read_video, write_video


def rate(fn, num: int) -> float:  # noqa: ANN001
    """Calls of ``fn(i)`` per second over ``num`` calls."""
    t0 = time.perf_counter()
    for i in range(num):
        fn(i)
    return num / (time.perf_counter() - t0)


def speed(num: int) -> None:
    peer = rate(lambda i: world.render(world.sample_spec(world.clip_rng(0, i))), num)
    print(f"one-object world (sample_spec + render): {peer:.0f} clips/s")
    for cat in CATEGORIES:
        r = rate(lambda i, c=cat: scenes.render(scenes.sample_scene(world.clip_rng(0, i), c)), num // 4)  # fmt: skip
        print(f"  {cat:<13} {r:7.0f} clips/s")
    mixed = rate(lambda i: scenes.render(scenes.sample_scene(world.clip_rng(0, i), CATEGORIES[i % 8])), num)  # fmt: skip
    print(f"scenes, all categories in turn: {mixed:.0f} clips/s ({mixed / peer:.2f}x the one-object world; target >= 200)")  # fmt: skip


def sweep(per_side: int) -> None:
    rng = np.random.default_rng(0)
    colors = list(world.COLORS)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        for side in range(7, 15):
            line = []
            for spin in (False, True):
                ok, n = Counter(), Counter()
                for i in range(per_side):
                    shape = world.SHAPES[i % 3] if not spin else ("square", "triangle")[i % 2]
                    color = colors[i % 8]
                    x, y = rng.uniform(12, 52 - side, 2)
                    angle = rng.uniform(12, 24) * scenes.FRAMES if spin else 0.0
                    obj = scenes._object(shape, color, x, y, side, angle)
                    comp = Composition("actions", (Thing(color, shape),), ("spin",))
                    write_video(path, scenes.render(scenes.Scene(comp, "", "train", [obj])), fps=8)  # type: ignore[arg-type]
                    for dets in grader.detect(read_video(path)):
                        for d in dets:
                            n[shape] += 1
                            ok[shape] += d.shape == shape and d.color == color
                line.append(("spinning " if spin else "still ") + " ".join(f"{s} {ok[s] / n[s]:.3f}" for s in n))  # fmt: skip
            print(f"  side {side:2d} px: " + "; ".join(line))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2000, help="clips for the speed test")
    ap.add_argument("--sweep", type=int, default=60, help="clips per side in the size sweep")
    args = ap.parse_args()
    speed(args.clips)
    print("colour and shape read right, per detection, after mp4:")
    sweep(args.sweep)


if __name__ == "__main__":
    main()
