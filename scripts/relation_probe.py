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

    .venv/bin/python scripts/relation_probe.py PIPELINE --loss CACHE [--clips 96]

prints instead the velocity loss on the cache's spatial clips at high noise levels, each clip's
composition said with its own relation, with the other axis's ("above" for "left of") and with
the inverse ("below" for "above"), the same noise for all three: how much reading the word is
worth to the training loss where the sampler decides a layout.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections import Counter

import numpy as np
import torch

from nanosora.data.cache import LatentCache
from nanosora.diffusion.flow import add_noise, velocity_target
from nanosora.evaluate.scenes import ground_truth
from nanosora.pipeline import Pipeline, replace_cfg
from nanosora.precision import bf16_autocast
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
OTHER_AXIS = {"above": "left", "below": "right", "left": "above", "right": "below"}
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left"}
LOSS_LEVELS = (0.995, 0.98, 0.95, 0.9, 0.7)
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
    n = sum(confusion.values())
    return {
        "confusion": confusion,
        "right": sum(confusion[r, r] for r in RELATIONS) / n,
        "axis": sum(confusion[r, x] for r in RELATIONS for x in {r, INVERSE[r]}) / n,
        "word_effect": float(np.mean(word) / np.mean(noise))
        if np.mean(noise or [0])
        else float("nan"),
    }


def variants(text: str) -> dict[str, str]:
    """A spatial caption said plainly with its own relation, the other axis's and the inverse."""
    comp = parse(text)[0]
    if comp.category != "spatial":
        raise ValueError(f"{text!r} is a {comp.category} caption, not a spatial one")
    a, b = (f"a {t.color} {t.shape}" for t in comp.things)
    word = comp.words[0]
    return {
        "own": prompt(a, word, b),
        "other axis": prompt(a, OTHER_AXIS[word], b),
        "inverse": prompt(a, INVERSE[word], b),
    }


@torch.no_grad()
def relation_losses(
    pipe: Pipeline, cache: LatentCache, clips: int
) -> dict[tuple[str, float], float]:
    """Mean velocity MSE over the first ``clips`` spatial clips of ``cache``, keyed (variant,
    noise level); posterior samples and noise are seeded by the batch, shared by the variants."""
    texts, cats = cache.manifest_column("text"), cache.manifest_column("category")
    rows = [i for i, c in enumerate(cats) if c == "spatial"][:clips]
    if not rows:
        raise SystemExit(f"{cache.meta['manifest']} has no spatial clips")
    sums: dict[tuple[str, float], float] = {}
    for lo in range(0, len(rows), 32):
        batch = rows[lo : lo + 32]
        gen = torch.Generator().manual_seed(batch[0])
        x0 = cache.batch(batch, gen)[0]
        said = [variants(texts[i]) for i in batch]
        encoded = {k: pipe.text_encoder([v[k] for v in said]) for k in said[0]}
        for s in LOSS_LEVELS:
            noise, level = torch.randn(x0.shape, generator=gen), torch.full((len(batch),), s)
            for k, (text, mask) in encoded.items():
                with bf16_autocast("cpu"):  # as the training's validation loss
                    pred = pipe.dit(add_noise(x0, noise, level), level, text, mask).float()
                err = (pred - velocity_target(x0, noise)).pow(2).flatten(1).mean(1).sum().item()
                sums[k, s] = sums.get((k, s), 0.0) + err
    return {k: v / len(rows) for k, v in sums.items()}


def loss_table(losses: dict[tuple[str, float], float]) -> str:
    lines = [
        "| relation said | " + " | ".join(f"s = {s:g}" for s in LOSS_LEVELS) + " |",
        "|---|" + "---|" * len(LOSS_LEVELS),
    ]
    for k in ("own", "other axis", "inverse"):
        lines.append(f"| {k} | " + " | ".join(f"{losses[k, s]:.4f}" for s in LOSS_LEVELS) + " |")
    return "\n".join(lines)


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
    ap.add_argument("--loss", metavar="CACHE", help="losses on a latent cache's spatial clips")
    ap.add_argument("--clips", type=int, default=96, help="spatial clips for --loss")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.loss:
        if not args.pipeline:
            raise SystemExit("--loss needs a PIPELINE")
        pipe = Pipeline.load(args.pipeline)
        print(loss_table(relation_losses(pipe, LatentCache(args.loss), args.clips)))
        return
    pairs = list(PAIRS)
    if args.pipeline:
        videos = generate(args.pipeline, pairs, args.seeds, args.cfg)
    else:
        videos = render(pairs, args.seeds, args.truth_swapped)
    print(table(probe(videos, pairs)))


if __name__ == "__main__":
    main()
