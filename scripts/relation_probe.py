"""Does a model read a relation word? "A above B", "A below B", "A left of B", "A right of B", same seeds.

    .venv/bin/python scripts/relation_probe.py PIPELINE [--seeds 4] [--cfg 3]
    .venv/bin/python scripts/relation_probe.py --truth           # the world's own renders
    .venv/bin/python scripts/relation_probe.py --truth-swapped   # "B rel A" rendered for "A rel B"

Each pair of subjects is asked in each of the four relations with the same seeds; the benchmark's
grader reads which relation holds between them. Printed: the confusion of asked and read relations
(a clip that passes reads as asked; one whose grader verdict names another relation reads as that
one; anything else, a missing or merged object, as its failure kind), the share read right, the
share read on the asked axis (right or reversed: "above" read as "above" or "below"), and
how much the word moves the clip: the mean absolute pixel difference between two clips of one seed
asked in two relations, over that between two seeds asked the same. Near 1 the word decides the
layout as much as the noise does; near 0 the noise decides it and the word is not read.
The ground truth must read 100% right and the swapped ground truth 0%, every clip reversed.
What reading the word is worth to the training loss: `scripts/binding_loss.py`.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import Counter

import numpy as np
import torch

from nanosora.evaluate.scenes import ground_truth
from nanosora.pipeline import Pipeline, replace_cfg
from nanosora.shapes import grader
from nanosora.shapes.grammar import parse

RELATIONS = {
    "above": "above",
    "below": "below",
    "left": "to the left of",
    "right": "to the right of",
}
PAIRS = (
    ("a red circle", "a blue square"),
    ("a green triangle", "a yellow circle"),
    ("a white square", "a purple triangle"),
)
FIRST_SEED = 100
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left"}
_READ = re.compile(r" is (left of|right of|above|below) the ")


def prompt(a: str, relation: str, b: str) -> str:
    return f"{a} {RELATIONS[relation]} {b}"


def read(frames: np.ndarray, text: str, asked: str) -> str:
    """The relation the grader sees in a clip asked ``asked`` (or its failure kind)."""
    verdict = grader.grade(frames, parse(text)[0])
    if verdict.passed:
        return asked
    seen = _READ.search(verdict.reason)
    return seen.group(1).split()[0] if seen else verdict.kind


def render(pairs: list[tuple[str, str]], seeds: int, swap: bool) -> dict:
    """The world's clips keyed (pair index, relation, seed); with ``swap``, of "B rel A"."""
    out = {}
    for i, (a, b) in enumerate(pairs):
        for r in RELATIONS:
            for s in range(seeds):
                out[i, r, s] = ground_truth(prompt(b, r, a) if swap else prompt(a, r, b), FIRST_SEED + s)  # fmt: skip
    return out


def generate(pipeline: str, pairs: list[tuple[str, str]], seeds: int, cfg: float | None) -> dict:
    """A pipeline's clips of every prompt; seed s is the same noise for every relation."""
    pipe = Pipeline.load(pipeline)
    if cfg is not None:
        pipe = replace_cfg(pipe, cfg_scale=cfg)
    out = {}
    for i, (a, b) in enumerate(pairs):
        for s in range(seeds):
            clips = pipe.generate([prompt(a, r, b) for r in RELATIONS], seeds=[FIRST_SEED + s] * len(RELATIONS))  # fmt: skip
            for r, clip in zip(RELATIONS, clips):
                out[i, r, s] = clip
        print(f"generated {a!r} / {b!r}", flush=True)
    return out


def probe(videos: dict, pairs: list[tuple[str, str]]) -> dict:
    """Readings of clips keyed (pair index, asked relation, seed): confusion, share right, word effect."""
    confusion: Counter = Counter()
    for (i, asked, _), frames in videos.items():
        a, b = pairs[i]
        confusion[asked, read(np.asarray(frames), prompt(a, asked, b), asked)] += 1
    seeds = sorted({k[2] for k in videos})
    word, noise = [], []
    for i in {k[0] for k in videos}:
        clip = {(r, s): np.asarray(videos[i, r, s], dtype=np.float32) for r in RELATIONS for s in seeds}  # fmt: skip
        for s in seeds:
            word += [np.abs(clip[r1, s] - clip[r2, s]).mean() for r1, r2 in itertools.combinations(RELATIONS, 2)]  # fmt: skip
        for r in RELATIONS:
            noise += [np.abs(clip[r, s1] - clip[r, s2]).mean() for s1, s2 in itertools.combinations(seeds, 2)]  # fmt: skip
    n, spread = sum(confusion.values()), float(np.mean(noise)) if noise else 0.0
    return {
        "confusion": confusion,
        "right": sum(confusion[r, r] for r in RELATIONS) / n,
        "axis": sum(confusion[r, x] for r in RELATIONS for x in {r, INVERSE[r]}) / n,
        "word_effect": float(np.mean(word) / spread) if spread else float("nan"),
    }


def table(result: dict) -> str:
    """Markdown: one row per asked relation, one column per reading."""
    others = sorted({r for _, r in result["confusion"]} - set(RELATIONS))
    reads = (*RELATIONS, *others)
    lines = [
        "| asked | " + " | ".join(f"read {r}" for r in reads) + " |",
        "|---|" + "---|" * len(reads),
    ]
    for a in RELATIONS:
        lines.append(f"| {a} | " + " | ".join(str(result["confusion"][a, r]) for r in reads) + " |")
    lines.append(
        f"\nread right: {result['right']:.1%}; on the asked axis: {result['axis']:.1%}; word effect (same seed, other word / same word, "
        f"other seed): {result['word_effect']:.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("pipeline", nargs="?")
    what.add_argument("--truth", action="store_true", help="the world's renders")
    what.add_argument("--truth-swapped", action="store_true", help="renders of B rel A")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--cfg", type=float, default=None, help="guidance (default: the pipeline's)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pairs = list(PAIRS)
    if args.pipeline:
        videos = generate(args.pipeline, pairs, args.seeds, args.cfg)
    else:
        videos = render(pairs, args.seeds, args.truth_swapped)
    print(table(probe(videos, pairs)))


if __name__ == "__main__":
    main()
