"""At which sampling step a clip settles each object's colour, shape and size.

    .venv/bin/python scripts/commit_steps.py PIPELINE [--category attributes] [--prompts 8] [--seeds 2]

For the first prompts of a benchmark category (in `scenes.suite` order) and each seed, the
sampler's data estimate at every step (x0 = x - s v) is decoded and read by the scenes grader;
an attribute is settled at the first step from which the objects read, described by colour, by
colour and shape, and by colour, shape and size, are those of the final clip at every later
step. Printed per clip with its verdict, then the mean settling step of each attribute for the
clips that pass and those that fail.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch

from nanosora.pipeline import Pipeline
from nanosora.shapes import scenes
from nanosora.shapes.grader import grade_prompt, read

LEVELS = ("colour", "shape", "size")


def objects(frames: np.ndarray) -> list[tuple[str, str, str]]:
    """(colour, shape, size) of every object the grader tracks in uint8 (T, H, W, 3) frames."""
    return [(t.color, t.shape, t.size) for t in read(frames).tracks]


def settling_steps(readings: list[list[tuple[str, str, str]]]) -> dict[str, int]:
    """First step from which each level's multiset of objects equals the last step's for good."""
    out = {}
    for k, level in enumerate(LEVELS, start=1):
        keys = [Counter(o[:k] for o in r) for r in readings]
        step = len(keys) - 1
        while step > 0 and keys[step - 1] == keys[-1]:
            step -= 1
        out[level] = step
    return out


def clip_readings(pipe, prompt: str, seed: int) -> tuple[list[list[tuple[str, str, str]]], bool]:
    """The grader's objects in the decoded data estimate of every step, then in the clip; and
    whether the clip passes."""
    estimates: list[torch.Tensor] = []
    latents = pipe.sample_latents([prompt], seed=seed, callback=lambda i, x0: estimates.append(x0))
    final = pipe.decode_latents(latents)[0]
    readings = [objects(pipe.decode_latents(x0)[0]) for x0 in estimates]
    return readings + [objects(final)], grade_prompt(final, prompt).passed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("--category", default="attributes", choices=scenes.CATEGORIES)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Pipeline.load(args.pipeline)
    prompts = scenes.suite((args.category,))[: args.prompts]
    by_verdict: dict[bool, list[dict[str, int]]] = {True: [], False: []}
    for p in prompts:
        for seed in range(args.seeds):
            readings, passed = clip_readings(pipe, p.text, seed)
            steps = settling_steps(readings)
            by_verdict[passed].append(steps)
            cells = ", ".join(f"{k} {v}" for k, v in steps.items())
            print(f"{'pass' if passed else 'FAIL'} seed {seed} {p.text!r}: settled at {cells} (of {len(readings) - 1} steps)", flush=True)  # fmt: skip
    for passed, rows in by_verdict.items():
        if rows:
            means = ", ".join(f"{k} {np.mean([r[k] for r in rows]):.1f}" for k in LEVELS)
            print(f"{'passed' if passed else 'failed'} ({len(rows)} clips): mean settling step {means}")  # fmt: skip


if __name__ == "__main__":
    main()
