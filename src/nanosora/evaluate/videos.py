"""Metrics of a set of videos (generated clips on disk or in memory): temporal quality, prompt
adherence from the probe, and a Fréchet distance to a reference set.

The distance is FVD when an I3D TorchScript file is given, and otherwise the Fréchet shapes
distance (FSD) on the features of nanosora's own shapes encoder (``features.py``); it is never
called FVD then. Both sets always have the same frame count and resolution (the reference is
decoded or rendered at the generated clips' shape), as the StyleGAN-V protocol requires. Next to
the distance, ``*_floor`` is the distance between two independent reference sets of the same size:
the value a perfect generator would get at this sample size (Fréchet distances are biased upward
for small sets), so a model is judged by how far above the floor it lands.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch

from nanosora.evaluate.features import video_features
from nanosora.evaluate.metrics import feature_stats, frechet_distance
from nanosora.evaluate.temporal import temporal_metrics
from nanosora.shapes.captions import parse_prompt
from nanosora.shapes.probe import probe_frames
from nanosora.shapes.world import NUM_FRAMES, SIZE, clip_rng, render, sample_spec
from nanosora.video.io import VideoError, read_video, resize_frame, write_video

TEMPORAL = ("flicker", "motion_smoothness", "object_persistence")


def load_videos(
    paths: list[str], num_frames: int | None = None, size: tuple[int, int] | None = None
) -> tuple[list[np.ndarray], list[int], list[dict]]:
    """Decode every path; unreadable ones are reported, not fatal.

    Clips are cut or padded (last frame repeated) to ``num_frames`` and resized to ``size`` when
    given. Returns ``(frames, kept indices, skipped [{index, path, reason}])``.
    """
    videos, kept, skipped = [], [], []
    for i, p in enumerate(paths):
        try:
            v = read_video(p, size=size, max_frames=num_frames)
        except VideoError as e:
            skipped.append({"index": i, "path": p, "reason": str(e)})
            continue
        if num_frames is not None and len(v) < num_frames:
            v = np.concatenate([v, np.repeat(v[-1:], num_frames - len(v), axis=0)])
        videos.append(v)
        kept.append(i)
    return videos, kept, skipped


def _through_codec(videos: list[np.ndarray], fps: float) -> list[np.ndarray]:
    """Round-trip videos through the mp4 writer, so references carry the same codec artefacts as
    generated files."""
    with tempfile.TemporaryDirectory() as d:
        out = []
        for i, v in enumerate(videos):
            write_video(Path(d) / f"{i}.mp4", v, fps=fps)
            out.append(read_video(Path(d) / f"{i}.mp4"))
    return out


def render_reference(
    prompts: list[str], shape: tuple[int, int, int], seed: int, fps: float = 8.0
) -> list[np.ndarray]:
    """Shapes-world ground truth for ``prompts``: the composition each prompt names (random where it
    names none), random size, speed and start; rendered, mp4 round-tripped, at ``shape`` (T, H, W).
    """
    T, H, W = shape
    if T > NUM_FRAMES:
        raise ValueError(f"the shapes world renders {NUM_FRAMES} frames; clips have {T}")
    out = []
    for i, prompt in enumerate(prompts):
        rng = clip_rng(seed, i)
        color, shape_name, direction = parse_prompt(prompt)
        spec = sample_spec(rng, "all")
        # The start position depends on the direction: redraw until it matches, then set the
        # colour and shape (which do not move anything).
        while direction is not None and spec.direction != direction:
            spec = sample_spec(rng, "all")
        spec = dataclasses.replace(spec, color=color or spec.color, shape=shape_name or spec.shape)
        frames = render(spec)[:T]
        if (H, W) != (SIZE, SIZE):
            frames = np.stack([resize_frame(f, (H, W)) for f in frames])
        out.append(frames)
    return _through_codec(out, fps)


def frechet_between(
    net: torch.nn.Module, a: list[np.ndarray], b: list[np.ndarray], i3d: bool
) -> float:
    """Fréchet distance between the feature statistics of two video sets of one shape."""
    shapes = {v.shape for v in a} | {v.shape for v in b}
    if len(shapes) != 1:
        raise ValueError(f"both sets need one frame count and resolution, got {sorted(shapes)}")
    return frechet_distance(
        *feature_stats(video_features(net, a, i3d=i3d)),
        *feature_stats(video_features(net, b, i3d=i3d)),
    )


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def video_set_metrics(
    videos: list[np.ndarray],
    prompts: list[str],
    reference: list[np.ndarray] | None = None,
    reference_floor: list[np.ndarray] | None = None,
    net: torch.nn.Module | None = None,
    i3d: bool = False,
) -> dict:
    """Temporal metrics and probe adherence per clip and on average, plus the Fréchet distance.

    ``reference``/``reference_floor``: two independent reference sets (same shape as ``videos``)
    for the distance and its floor; ``net``: the I3D detector (``i3d=True``) or a shapes encoder.
    Returns ``{"clips", "temporal": {...}, "adherence": {...} | None, "per_clip": [...],
    "fvd"|"fsd": float, "fvd_floor"|"fsd_floor": float}`` (the distance keys only with a net).
    """
    per_clip, hits = [], []
    for i, (v, prompt) in enumerate(zip(videos, prompts, strict=True)):
        row: dict = {"index": i, "prompt": prompt, **temporal_metrics(v)}
        want = parse_prompt(prompt)
        if None not in want:  # a shapes-world prompt: grade it with the probe
            r = probe_frames(v)
            got = (r.color, r.shape, r.direction)
            row |= {"read": " ".join(str(g) for g in got), "correct": got == want}
            hits.append([g == w for g, w in zip(got, want)])
        per_clip.append(row)
    out: dict = {
        "clips": len(videos),
        # NaN marks a clip too short for a metric: average over the clips that have it.
        "temporal": {k: _nanmean([r[k] for r in per_clip]) for k in TEMPORAL},
        "adherence": None,
        "per_clip": per_clip,
    }
    if hits:
        h = np.array(hits)
        out["adherence"] = {
            "color": float(h[:, 0].mean()),
            "shape": float(h[:, 1].mean()),
            "direction": float(h[:, 2].mean()),
            "joint": float(h.all(axis=1).mean()),
            "n": len(h),
        }
    if net is not None and reference is not None and len(videos) < 2:
        out["distribution_distance"] = "not computed: a Fréchet distance needs >= 2 clips"
    elif net is not None and reference is not None:
        name = "fvd" if i3d else "fsd"
        out[name] = frechet_between(net, videos, reference, i3d)
        if reference_floor is not None:
            out[f"{name}_floor"] = frechet_between(net, reference_floor, reference, i3d)
    return out
