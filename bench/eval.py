"""Eval speed on 64 generated clips with every metric except I3D (target: under 2 minutes).

1. Generates 64 clips with the shipped model (the 32 eval prompts x 2 seeds) into
   ``WORKDIR/clips`` with a ``manifest.csv`` (skipped when they are already there);
2. trains the shapes encoder into ``WORKDIR/encoder`` unless ``--encoder`` names one (timed on its
   own: it is a one-off, not part of an eval);
3. times ``nanosora eval --videos WORKDIR/manifest.csv --encoder ENC``: decoding, temporal metrics,
   probe adherence, prompt-matched reference rendering (two sets, mp4 round trip), encoder
   features, Fréchet shapes distance and its floor, report.json + report.html.

Peer: the Fréchet distance of 64-d and 400-d (I3D-sized) feature sets, ours (eigh) against the
pytorch-fid formula with ``scipy.linalg.sqrtm``, same inputs, with the ratio and the agreement.

    OPENBLAS_NUM_THREADS=1 python bench/eval.py [--workdir runs/bench_eval] [--encoder DIR] [--threads 1]

On a CPU shared with other jobs, keep numpy's BLAS to one thread (the variable above): a
multi-threaded eigendecomposition that competes for busy cores runs tens of times slower.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np


def generate_clips(workdir: Path, num: int) -> Path:
    """``num`` clips of the shipped model for the eval prompts; returns the manifest path."""
    import pandas as pd

    from nanosora.generate import Pipeline
    from nanosora.shapes.world import eval_prompts
    from nanosora.video.io import write_video

    manifest = workdir / "manifest.csv"
    if manifest.is_file() and len(pd.read_csv(manifest)) == num:
        return manifest
    prompts = [p[3] for p in eval_prompts("train") + eval_prompts("heldout")]
    jobs = [(prompts[i % len(prompts)], 1000 * (i // len(prompts)) + i) for i in range(num)]
    pipe = Pipeline.load(None)
    (workdir / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for lo in range(0, num, 16):
        chunk = jobs[lo : lo + 16]
        videos = pipe.generate([p for p, _ in chunk], seeds=[s for _, s in chunk])
        for k, ((prompt, _), video) in enumerate(zip(chunk, videos)):
            path = f"clips/{lo + k:04d}.mp4"
            write_video(workdir / path, video, fps=pipe.cfg.fps)
            rows.append({"path": path, "text": prompt})
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def frechet_peer(dim: int, repeats: int = 3) -> tuple[float, float, float]:
    """(ours s, scipy s, relative difference) on fixed Gaussian sets of width ``dim``."""
    import scipy.linalg

    from nanosora.evaluate.metrics import feature_stats, frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(2 * dim, dim)) @ rng.normal(size=(dim, dim))
    b = rng.normal(0.2, 1.1, size=(2 * dim, dim)) @ rng.normal(size=(dim, dim))
    (m1, s1), (m2, s2) = feature_stats(a), feature_stats(b)

    def scipy_fd() -> float:
        covmean = scipy.linalg.sqrtm(s1 @ s2).real
        return float((m1 - m2) @ (m1 - m2) + np.trace(s1 + s2) - 2 * np.trace(covmean))

    times = {}
    for name, fn in (("ours", lambda: frechet_distance(m1, s1, m2, s2)), ("scipy", scipy_fd)):
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            value = fn()
            ts.append(time.perf_counter() - t0)
        times[name] = (statistics.median(ts), value)
    rel = abs(times["ours"][1] - times["scipy"][1]) / abs(times["scipy"][1])
    return times["ours"][0], times["scipy"][0], rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("runs/bench_eval"))
    ap.add_argument("--encoder", type=Path, default=None)
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from nanosora.evaluate.features import train_encoder
    from nanosora.evaluate.run import eval_videos

    t0 = time.perf_counter()
    manifest = generate_clips(args.workdir, args.num)
    print(f"clips ready: {manifest} ({time.perf_counter() - t0:.1f} s)")
    encoder = args.encoder
    if encoder is None:
        encoder = args.workdir / "encoder"
        if not (encoder / "model.safetensors").is_file():
            t0 = time.perf_counter()
            train_encoder(encoder)
            print(f"shapes encoder trained in {time.perf_counter() - t0:.1f} s (one-off)")
    t0 = time.perf_counter()
    eval_videos(manifest, args.workdir / "report", encoder=encoder)
    seconds = time.perf_counter() - t0
    print(f"eval of {args.num} clips, all metrics but I3D: {seconds:.1f} s (target < 120 s)")
    for dim in (64, 400):
        ours, peer, rel = frechet_peer(dim)
        print(
            f"Fréchet distance, {dim}-d: ours {1e3 * ours:.1f} ms, scipy sqrtm {1e3 * peer:.1f} ms "
            f"(ratio {peer / ours:.2f}x), relative difference {rel:.1e}"
        )


if __name__ == "__main__":
    main()
