"""Two training jobs on one small machine: how fast each runs against one job alone.

Each job is a separate process running real DiT training steps (``bench/mfu.py``'s step: loss,
backward, clipping, AdamW, EMA) for ``--seconds``. Arms, all in the same run:

- one job alone, on all cores (the baseline);
- two jobs, each on all cores, OpenMP's default wait policy (idle threads spin for a while);
- two jobs, each on all cores, ``OMP_WAIT_POLICY=PASSIVE`` (idle threads sleep at once);
- two jobs on one thread each.

Printed: steps per second of each job and of both together, as ratios of the job alone. On a
2-core machine spinning threads steal the cores the other job's threads wait for, so two default
jobs run far slower than half speed each; the environment variable must be set before the process
starts (libgomp reads it once).

    python bench/contention.py [--seconds 30] [--preset shapes] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

LATENT = (4, 17, 16, 16)  # the scenes recipe's latents


def worker(preset: str, batch: int, seconds: float, threads: int) -> None:
    from dataclasses import replace

    from mfu import make_step

    from nanosora.config import DIT_PRESETS

    torch.set_num_threads(threads)
    cfg = replace(DIT_PRESETS[preset], in_channels=LATENT[0], patch_t=2, patch_hw=4)
    _, step, _ = make_step(cfg, batch, LATENT, bf16=True)
    step()  # warm-up
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    print(json.dumps({"steps_per_s": n / (time.perf_counter() - t0)}), flush=True)


def arm(jobs: int, threads: int, passive: bool, args: argparse.Namespace) -> list[float]:
    """Steps per second of each of ``jobs`` simultaneous worker processes."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if passive:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads)]
    cmd += ["--seconds", str(args.seconds), "--preset", args.preset, "--batch", str(args.batch)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    rates = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed with exit code {p.returncode}")
        rates.append(json.loads(out.strip().splitlines()[-1])["steps_per_s"])
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="timed seconds per arm")
    ap.add_argument("--preset", default="shapes", help="DiT preset (nanosora.config.DIT_PRESETS)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0, help="threads per job (0 = all cores)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    if args.worker:
        return worker(args.preset, args.batch, args.seconds, args.threads or cores)
    print(f"{cores} cores, DiT preset {args.preset!r}, batch {args.batch}, latents {LATENT}, "
          f"{args.seconds:.0f} s per arm, torch {torch.__version__}")  # fmt: skip
    alone = arm(1, cores, False, args)[0]
    print(f"one job alone, {cores} threads: {alone:.2f} steps/s (the baseline)")
    arms = [
        (f"two jobs, {cores} threads each, default wait policy", cores, False),
        (f"two jobs, {cores} threads each, OMP_WAIT_POLICY=PASSIVE", cores, True),
        ("two jobs, 1 thread each", 1, False),
    ]
    for name, threads, passive in arms:
        rates = arm(2, threads, passive, args)
        each = " and ".join(f"{r / alone:.2f}x" for r in rates)
        print(f"{name}: each {each} of alone; together {sum(rates) / alone:.2f}x")


if __name__ == "__main__":
    main()
