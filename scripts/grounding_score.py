"""How well a pipeline's cross-attention finds each colour and shape word's objects.

    .venv/bin/python scripts/grounding_score.py PIPELINE CACHE [--clips 256]

CACHE needs grounding targets (`nanosora ground CACHE --patch P`). For each clip, noise level of
train/dit.py's ``VAL_LEVELS`` (seeded posterior samples and noise, the same for every model) and
grounded word, the share of the word's attention mass (each token's softmax over the words,
averaged over heads) that falls on its objects' tokens; printed per noise level for the blocks'
mean attention (what the loss trains) and for each block, beside chance (the share uniform attention would give: the
word's tokens over all tokens). The grounding loss (``flow.ground_weight``) trains this share up.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from nanosora.config import DiTConfig
from nanosora.data.cache import LatentCache
from nanosora.data.grounding import GroundingTargets, token_targets
from nanosora.diffusion.flow import add_noise
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import load_module
from nanosora.precision import bf16_autocast
from nanosora.train.dit import VAL_LEVELS


@torch.no_grad()
def shares(
    dit: VideoDiT, cache: LatentCache, targets: GroundingTargets, clips: int, batch: int = 32
):
    """{level: (mean shares (1 + depth,): of the blocks' mean attention, then of each block;
    chance)} over the first ``clips`` clips."""
    out: dict[float, tuple[list[np.ndarray], list[float]]] = {s: ([], []) for s in VAL_LEVELS}
    n = min(clips, len(cache))
    for start in range(0, n, batch):
        rows = list(range(start, min(start + batch, n)))
        gen = torch.Generator().manual_seed(rows[0])
        x0, text, mask = cache.batch(rows, gen)
        ground = token_targets(targets.batch(cache.index[rows], text.shape[1]), dit.cfg.patch_t)
        for s in VAL_LEVELS:
            noise = torch.randn(x0.shape, generator=gen)
            level = torch.full((len(rows),), s)
            probs: list[torch.Tensor] = []
            with bf16_autocast("cpu", True):
                dit(add_noise(x0, noise, level), level, text, mask, cross_probs=probs)
            g = ground[:, :, : probs[0].shape[-1]]
            words = g.any(1)  # (B, L)
            per_block = []
            for p in [torch.stack(probs).mean(0), *probs]:  # the loss's mean first
                inside = (p * g).sum(1) / p.sum(1).clamp_min(1e-8)
                per_block.append(inside[words].numpy())
            out[s][0].append(np.stack(per_block))  # (depth, words)
            out[s][1].extend((g.float().mean(1))[words].tolist())
    return {s: (np.concatenate(b, axis=1).mean(1), float(np.mean(c))) for s, (b, c) in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("cache")
    ap.add_argument("--clips", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dit = load_module(f"{args.pipeline}/transformer", DiTConfig, VideoDiT, "dit")
    cache = LatentCache(args.cache)
    result = shares(dit, cache, GroundingTargets(args.cache, dit.cfg.patch_hw), args.clips)
    depth = dit.cfg.depth
    print(
        "| noise level | chance | all blocks | "
        + " | ".join(f"block {i}" for i in range(depth))
        + " |"
    )
    print("|---|---|---|" + "---|" * depth)
    for s, (blocks, chance) in result.items():
        cells = " | ".join(f"{b:.3f}" for b in blocks[1:])
        print(f"| {s:g} | {chance:.3f} | {blocks[0]:.3f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
