"""Scenes grader: speed (target: >= 100 clips/s) and the full validation (1,000 clips
per category, both ways).

1. speed: ground-truth clips of every category written as mp4; timed over the same files:
   decoding them (`read_video`, the baseline), grading the decoded frames (detect, track, judge
   against the clip's composition), both, and both in 2 processes (as `nanosora grade
   --workers 2`); peer: today's one-object probe on single clips;
2. ``--validate N``: `shapes.validate` on N clips per category (one mp4 file per clip, as the
   tests do with fewer): pass rate on ground truth, rejection rate of near misses, and how many
   rejections name the failure kind their change implies.

    OMP_NUM_THREADS=1 python bench/grade.py [--clips 800] [--validate 1000 --workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from nanosora.shapes import grader, scenes, world
from nanosora.shapes.grammar import CATEGORIES
from nanosora.shapes.probe import probe_frames
from nanosora.shapes.validate import Validation, validate_chunk
from nanosora.video.io import read_video, write_video


def grade_files(jobs: list[tuple[str, object]]) -> int:
    """Worker: decode and grade ``(path, composition)`` jobs -> how many pass."""
    return sum(grader.grade(read_video(p), comp).passed for p, comp in jobs)  # type: ignore[arg-type]


def speed(num: int) -> None:
    clips = [scenes.sample_scene(world.clip_rng(1, i), CATEGORIES[i % 8], "all") for i in range(num)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"{i:05d}.mp4" for i in range(num)]
        for scene, path in zip(clips, paths):
            write_video(path, scenes.render(scene), fps=world.FPS)  # type: ignore[arg-type]
        t0 = time.perf_counter()
        frames = [read_video(p) for p in paths]
        decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        verdicts = [grader.grade(f, s.composition) for f, s in zip(frames, clips)]
        grade = time.perf_counter() - t0
        t0 = time.perf_counter()
        for p, s in zip(paths, clips):
            grader.grade(read_video(p), s.composition)
        both = time.perf_counter() - t0
        single = [f for f, s in zip(frames, clips) if s.composition.category == "single"]
        jobs = [[(str(p), s.composition) for p, s in zip(paths[lo : lo + 50], clips[lo : lo + 50])] for lo in range(0, num, 50)]  # fmt: skip
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            list(pool.map(grade_files, [jobs[0][:1]] * 2))  # start both workers first
            t0 = time.perf_counter()
            list(pool.map(grade_files, jobs))
            parallel = time.perf_counter() - t0
        t0 = time.perf_counter()
        for f in single:
            probe_frames(f)
        probe = (time.perf_counter() - t0) / len(single)
    passed = sum(v.passed for v in verdicts)
    print(f"{num} ground-truth mp4 clips, all categories in turn ({passed} pass)")
    print(f"  decode (read_video, baseline): {num / decode:7.0f} clips/s")
    print(f"  grade decoded frames:          {num / grade:7.0f} clips/s ({grade / decode:.2f}x the decode time)")  # fmt: skip
    print(f"  decode + grade:                {num / both:7.0f} clips/s (target >= 100)")
    print(f"  decode + grade, 2 processes:   {num / parallel:7.0f} clips/s")
    print(f"  peer, one-object probe:        {1 / probe:7.0f} clips/s (single clips)")


def validate(num: int, workers: int) -> None:
    chunk = 50
    jobs = [(c, lo, min(lo + chunk, num), 0) for c in CATEGORIES for lo in range(0, num, chunk)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(validate_chunk, jobs))
    merged = {c: Validation(c) for c in CATEGORIES}
    for r in results:
        merged[r.category].add(r)
    print(f"validation, {num} mp4 clips per category ({time.perf_counter() - t0:.0f} s, {workers} workers):")  # fmt: skip
    for c, v in merged.items():
        print(
            f"  {c:<13} ground truth passes {v.passed}/{v.clips} ({v.pass_rate:.2%}); "
            f"near misses rejected {v.rejected}/{v.near_misses} ({v.reject_rate:.2%}), "
            f"named with their kind {v.kinds_agreed}/{v.rejected} ({v.kind_rate:.2%})"
        )
        for line in v.failures[:2] + v.accepted[:2] + v.misnamed[:2]:
            print(f"      {line}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=800, help="clips for the speed test (0: none)")
    ap.add_argument("--validate", type=int, default=0, help="clips per category to validate")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.clips:
        speed(args.clips)
    if args.validate:
        validate(args.validate, args.workers)


if __name__ == "__main__":
    main()
