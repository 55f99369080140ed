"""Does a model follow the sign of a direction word? "moving left" against "moving right", same seeds.

    .venv/bin/python scripts/direction_probe.py PIPELINE [--seeds 8] [--cfg 3]
    .venv/bin/python scripts/direction_probe.py --truth            # the world's own renders
    .venv/bin/python scripts/direction_probe.py --truth-reversed   # the same, played backwards

Each subject is asked to move in each of the four directions with the same seeds; the one-object
probe (the benchmark's grader for single objects) reads the direction of every clip. Printed: the
confusion of asked and read directions, the share read right, the share of clips on the asked
axis whose sign is wrong, and where the object starts (a clip moving left starts on the right in
the world's renders, so a start on the wrong side shows the placement, not the word, deciding).
The ground truth must read 100% right and the reversed ground truth 0% with every sign wrong.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch

from nanosora.evaluate.scenes import ground_truth
from nanosora.pipeline import Pipeline, replace_cfg
from nanosora.shapes import grader
from nanosora.shapes.probe import probe_frames

DIRECTIONS = ("left", "right", "up", "down")
AXIS = {"left": 0, "right": 0, "up": 1, "down": 1}
SUBJECTS = ("a red circle", "a blue square", "a green triangle")
FIRST_SEED = 100


def prompt(subject: str, direction: str) -> str:
    return f"{subject} moving {direction}"


def start(frames: np.ndarray) -> tuple[float, float] | None:
    """(x, y) of the longest track's first sighting, None when nothing is tracked."""
    tracks = grader.read(frames).tracks
    if not tracks:
        return None
    track = max(tracks, key=lambda t: len(t.detections))
    return track.detections[min(track.detections)].centroid


def probe(videos: dict[tuple[str, str, int], np.ndarray]) -> dict:
    """Readings of clips keyed (subject, asked direction, seed): confusion, scores, starts."""
    confusion: Counter = Counter()
    starts: dict[str, list[float]] = {d: [] for d in DIRECTIONS}
    for (_, asked, _), frames in videos.items():
        read = probe_frames(frames).direction
        confusion[asked, read or "still"] += 1
        at = start(frames)
        if at is not None:
            starts[asked].append(at[AXIS[asked]])
    n = sum(confusion.values())
    right = sum(c for (a, r), c in confusion.items() if a == r)
    on_axis = sum(c for (a, r), c in confusion.items() if r in AXIS and AXIS[r] == AXIS[a])
    return {
        "confusion": confusion,
        "right": right / n,
        "sign_wrong": (on_axis - right) / on_axis if on_axis else float("nan"),
        "start": {d: float(np.mean(v)) if v else float("nan") for d, v in starts.items()},
    }


def render(subjects: list[str], seeds: int, reverse: bool) -> dict:
    """The world's renders of every prompt (played backwards with ``reverse``)."""
    out = {}
    for subject in subjects:
        for d in DIRECTIONS:
            for s in range(seeds):
                clip = ground_truth(prompt(subject, d), FIRST_SEED + s)
                out[subject, d, s] = clip[::-1] if reverse else clip
    return out


def generate(pipeline: str, subjects: list[str], seeds: int, cfg: float | None) -> dict:
    """A pipeline's clips of every prompt; seed s is the same noise for every prompt."""
    pipe = Pipeline.load(pipeline)
    if cfg is not None:
        pipe = replace_cfg(pipe, cfg_scale=cfg)
    out = {}
    for subject in subjects:
        for s in range(seeds):
            texts = [prompt(subject, d) for d in DIRECTIONS]
            clips = pipe.generate(texts, seeds=[FIRST_SEED + s] * len(texts))
            for d, clip in zip(DIRECTIONS, clips):
                out[subject, d, s] = clip
        print(f"generated {subject!r}", flush=True)
    return out


def table(result: dict) -> str:
    """Markdown: one row per asked direction, columns read direction and mean start."""
    reads = (*DIRECTIONS, "still")
    lines = [
        "| asked | " + " | ".join(f"read {r}" for r in reads) + " | mean start (x or y, px) |",
        "|---|" + "---|" * (len(reads) + 1),
    ]
    for a in DIRECTIONS:
        cells = " | ".join(str(result["confusion"][a, r]) for r in reads)
        lines.append(f"| {a} | {cells} | {result['start'][a]:.1f} |")
    lines.append(
        f"\nread right: {result['right']:.1%}; sign wrong on the asked axis: {result['sign_wrong']:.1%}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("pipeline", nargs="?")
    what.add_argument("--truth", action="store_true", help="the world's renders")
    what.add_argument("--truth-reversed", action="store_true", help="renders played backwards")
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--cfg", type=float, default=None, help="guidance (default: the pipeline's)")
    ap.add_argument("--subjects", nargs="+", default=list(SUBJECTS))
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pipeline:
        videos = generate(args.pipeline, args.subjects, args.seeds, args.cfg)
    else:
        videos = render(args.subjects, args.seeds, args.truth_reversed)
    print(table(probe(videos)))


if __name__ == "__main__":
    main()
