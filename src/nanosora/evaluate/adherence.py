"""Prompt adherence on the shapes world: generate the eval prompts, read the videos with the probe.

Adherence = share of generated videos whose colour, shape and direction (all three) match the
prompt, reported in-distribution (24 compositions seen in training) and on the 8 held-out
compositions (never generated for training: they measure compositional generalisation).
"""

from __future__ import annotations

import numpy as np

from nanosora.generate import Pipeline
from nanosora.shapes.probe import adherence, probe_frames
from nanosora.shapes.world import eval_prompts


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
        # Job (prompt i, seed k) always gets noise seed 1000 k + i, whatever the batching.
        jobs = [(i, k) for k in range(seeds) for i in range(len(items))]
        results, targets, first = [], [], []
        for lo in range(0, len(jobs), batch_size):
            chunk = jobs[lo : lo + batch_size]
            videos = pipe.generate(
                [items[i][3] for i, _ in chunk],
                steps=steps,
                cfg_scale=cfg_scale,
                seeds=[1000 * k + i for i, k in chunk],
            )
            for (i, k), video in zip(chunk, videos):
                r = probe_frames(video)
                results.append(r)
                targets.append(items[i][:3])
                out["samples"].append(
                    {
                        "split": key,
                        "prompt": items[i][3],
                        "seed": 1000 * k + i,
                        "color": r.color,
                        "shape": r.shape,
                        "direction": r.direction,
                        "correct": (r.color, r.shape, r.direction) == items[i][:3],
                    }
                )
                if k == 0:
                    first.append(video)
                if keep_all:
                    out["all_videos"].append(video)
        out[key] = adherence(results, targets)
        out["videos"][key] = np.stack(first)
    return out


def confusion(samples: list[dict], attribute: str, labels: tuple[str, ...]) -> np.ndarray:
    """(len(labels), len(labels) + 1) counts: rows = prompted value, columns = probe's reading
    (last column: the probe found none)."""
    from nanosora.shapes.captions import parse_prompt

    index = {"color": 0, "shape": 1, "direction": 2}[attribute]
    m = np.zeros((len(labels), len(labels) + 1), dtype=int)
    for s in samples:
        want = parse_prompt(s["prompt"])[index]
        got = s[attribute]
        m[labels.index(want), labels.index(got) if got in labels else len(labels)] += 1
    return m
