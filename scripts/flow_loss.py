"""A pipeline's validation loss (train/dit.py's ``level_losses``) on one or more latent caches.

    .venv/bin/python scripts/flow_loss.py PIPELINE CACHE [CACHE ...] [--clips 1024]

Each cache gets the velocity MSE at the fixed noise levels of ``VAL_LEVELS`` on its first
``--clips`` clips, with the same seeded posterior samples and noise for every model. Given the
training cache and a cache of unseen clips of the same world (`nanosora scenes --seed S` with
another seed, then `nanosora cache`), equal losses mean the model underfits (more data would not
help; more capacity or compute would), a lower training loss that it memorises its clips.
"""

from __future__ import annotations

import argparse

import torch

from nanosora.config import DiTConfig
from nanosora.data.cache import LatentCache
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import load_module
from nanosora.train.dit import VAL_LEVELS, level_losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("caches", nargs="+")
    ap.add_argument("--clips", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dit = load_module(f"{args.pipeline}/transformer", DiTConfig, VideoDiT, "dit")
    print("| cache | clips | " + " | ".join(f"s = {s:g}" for s in VAL_LEVELS) + " | mean |")
    print("|---|---|" + "---|" * (len(VAL_LEVELS) + 1))
    for path in args.caches:
        cache = LatentCache(path)
        losses = level_losses(dit, cache, args.clips)
        mean = sum(losses.values()) / len(losses)
        cells = " | ".join(f"{losses[s]:.4f}" for s in VAL_LEVELS)
        print(f"| {path} | {min(args.clips, len(cache))} | {cells} | {mean:.4f} |", flush=True)


if __name__ == "__main__":
    main()
