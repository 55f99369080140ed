"""Prompt adherence on the shapes world: generate the eval prompts, read the videos with the probe.

Adherence = share of generated videos whose colour, shape and direction (all three) match the
prompt, reported in-distribution (24 compositions seen in training) and on the 8 held-out
compositions (never generated for training: they measure compositional generalisation).
"""

from __future__ import annotations

import numpy as np

from nanosora.pipeline import Pipeline
from nanosora.shapes.captions import parse_prompt
from nanosora.shapes.probe import ProbeResult, adherence, probe_frames
from nanosora.shapes.world import eval_prompts


def generate_and_probe(
    pipe: Pipeline,
    prompts: list[str],
    seeds: int = 4,
    steps: int = 25,
    cfg_scale: float | None = None,
    batch_size: int = 16,
) -> list[tuple[int, int, np.ndarray, ProbeResult]]:
    """Every prompt with ``seeds`` seeds -> ``(prompt index i, round k, video, probe reading)``.

    Job (prompt i, round k) always gets noise seed 1000 k + i, whatever the batching.
    """
    jobs = [(i, k) for k in range(seeds) for i in range(len(prompts))]
    out = []
    for lo in range(0, len(jobs), batch_size):
        chunk = jobs[lo : lo + batch_size]
        videos = pipe.generate(
            [prompts[i] for i, _ in chunk],
            steps=steps,
            cfg_scale=cfg_scale,
            seeds=[1000 * k + i for i, k in chunk],
        )
        out += [(i, k, video, probe_frames(video)) for (i, k), video in zip(chunk, videos)]
    return out


def evaluate_adherence(
    pipe: Pipeline,
    seeds: int = 4,
    steps: int = 25,
    cfg_scale: float | None = None,
    batch_size: int = 16,
    keep_all: bool = False,
) -> dict:
    """Generate every eval prompt with ``seeds`` seeds; return adherence and per-sample records.

    Returns ``{"in_distribution": {...}, "heldout": {...}, "samples": [...], "videos": {split: uint8 array}}``
    where each split's dict has color/shape/direction/joint accuracies and ``n``; ``videos`` keeps
    the first seed's video of each prompt for the report; with ``keep_all``, ``"all_videos"`` holds
    every generated video, aligned with ``samples`` (for temporal metrics and Fréchet distances).
    """
    out: dict = {"samples": [], "videos": {}, "all_videos": []}
    for split, key in (("train", "in_distribution"), ("heldout", "heldout")):
        items = eval_prompts(split)  # type: ignore[arg-type]
        runs = generate_and_probe(
            pipe, [it[3] for it in items], seeds, steps, cfg_scale, batch_size
        )
        for i, k, video, r in runs:
            out["samples"].append(
                {
                    "split": key,
                    "prompt": items[i][3],
                    "seed": 1000 * k + i,
                    "color": r.color,
                    "shape": r.shape,
                    "direction": r.direction,
                    "fill": round(r.fill_ratio, 4) if r.found_frames else None,
                    "correct": (r.color, r.shape, r.direction) == items[i][:3],
                }
            )
            if keep_all:
                out["all_videos"].append(video)
        out[key] = adherence([r for *_, r in runs], [items[i][:3] for i, *_ in runs])
        out["videos"][key] = np.stack([video for _, k, video, _ in runs if k == 0])
    return out


def shape_fill(samples: list[dict]) -> dict[str, float]:
    """Median fill ratio (object area / bounding box, see shapes/probe.py) of the generated
    object per prompted shape. How far generated squares sit above ``FILL_SQUARE`` (and
    circles below it) shows how close the shape reading is to flipping, which a pass/fail
    count hides."""
    by_shape: dict[str, list[float]] = {}
    for s in samples:
        if s.get("fill") is not None:
            by_shape.setdefault(parse_prompt(s["prompt"])[1], []).append(s["fill"])
    return {k: round(float(np.median(v)), 4) for k, v in sorted(by_shape.items())}


def confusion(samples: list[dict], attribute: str, labels: tuple[str, ...]) -> np.ndarray:
    """(len(labels), len(labels) + 1) counts: rows = prompted value, columns = probe's reading
    (last column: the probe found none)."""
    index = {"color": 0, "shape": 1, "direction": 2}[attribute]
    m = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for s in samples:
        want = parse_prompt(s["prompt"])[index]
        got = s[attribute]
        m[labels.index(want), labels.index(got) if got in labels else len(labels)] += 1
    return m
