"""`nanosora eval`: metrics for a generation pipeline, a set of videos or a VAE, written as
report.json + report.html; and a comparison page of several reports.

- ``--model DIR``: prompt adherence on the shapes world (in-distribution and held-out, per
  attribute and joint, confusion matrices) with the sample videos, temporal quality of every
  generated clip, and FVD (``--i3d``) or the Fréchet shapes distance (``--encoder``).
- ``--videos M``: the same metrics for clips already on disk (a manifest with ``path`` and
  ``text``); missing or corrupt files are listed in the report and the rest are evaluated.
- ``--vae DIR --manifest M``: reconstruction PSNR/SSIM (and a perceptual distance with
  ``--lpips``) per clip and aggregate, the probe's accuracy on reconstructions when the manifest
  has shapes attributes, worst clips side by side.
- ``--compare A/report.json B/report.json``: one page with the runs side by side.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import yaml

from nanosora.data.datasets import ClipWindowDataset, tensor_to_frames
from nanosora.data.manifest import read_manifest, resolve_paths
from nanosora.evaluate.adherence import confusion, evaluate_adherence, shape_fill
from nanosora.evaluate.features import load_encoder, load_i3d
from nanosora.evaluate.perceptual import load_perceptual, perceptual_distance
from nanosora.evaluate.report import write_report
from nanosora.evaluate.videos import (
    TEMPORAL,
    load_videos,
    render_reference,
    video_set_metrics,
)
from nanosora.pipeline import Pipeline, load_vae, replace_cfg
from nanosora.shapes.world import COLORS, DIRECTIONS, SHAPES
from nanosora.train.reconstruction import reconstruction_metrics
from nanosora.video.io import VideoError, probe

FSD_NOTICE = (
    "no distribution distance: give --i3d FILE (FVD) or --encoder DIR (Fréchet shapes distance; "
    "train one with `nanosora eval --train-encoder -o DIR`)"
)


def _feature_net(encoder: str | Path | None, i3d: str | Path | None) -> tuple[object, bool]:
    """(network, is_i3d) for the Fréchet distance, or (None, False) when neither is given."""
    if i3d is not None:
        return load_i3d(i3d), True
    if encoder is not None:
        return load_encoder(encoder), False
    return None, False


def _temporal_chart(per_clip: list[dict], out_dir: Path) -> Path:
    """Histograms of the per-clip temporal metrics -> PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TEMPORAL), figsize=(4 * len(TEMPORAL), 2.8))
    for ax, key in zip(axes, TEMPORAL):
        ax.hist([r[key] for r in per_clip], bins=20, color="#4a7")
        ax.set_title(key)
        ax.set_ylabel("clips")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "temporal.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def _reference_sets(
    prompts: list[str], shape: tuple[int, int, int], reference: str | Path | None, fps: float
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """Reference clips at the generated clips' (T, H, W), and an independent second set for the
    floor. From a manifest: its first N readable clips, and the next N when it has 2N; else
    shapes-world ground truth rendered for the same prompts with two seeds."""
    n = len(prompts)
    if reference is None:
        return (
            render_reference(prompts, shape, seed=1, fps=fps),
            render_reference(prompts, shape, seed=2, fps=fps),
        )
    paths = resolve_paths(read_manifest(reference), reference).tolist()[: 2 * n]
    refs, _, skipped = load_videos(paths, num_frames=shape[0], size=shape[1:])
    for row in skipped:
        print(f"skipped reference row {row['index']}: {row['reason']}")
    if len(refs) < 2:
        raise ValueError(f"the reference {reference} has {len(refs)} readable clips; need >= 2")
    return (refs[:n], refs[n:]) if len(refs) >= 2 * n else (refs, None)


def _set_metrics(
    videos: list[np.ndarray],
    prompts: list[str],
    encoder: str | Path | None,
    i3d: str | Path | None,
    fps: float,
    reference: str | Path | None = None,
) -> dict:
    """``video_set_metrics`` with a reference set (and its floor) when a feature network is given."""
    net, is_i3d = _feature_net(encoder, i3d)
    ref = floor = None
    if net is not None:
        ref, floor = _reference_sets(prompts, videos[0].shape[:3], reference, fps)
    return video_set_metrics(videos, prompts, ref, floor, net, is_i3d)


def _distance_metrics(m: dict) -> dict:
    """The Fréchet entries of a ``video_set_metrics`` result, or the notice that there are none."""
    if "distribution_distance" in m:
        return {"distribution_distance": m["distribution_distance"]}
    keys = [k for k in ("fvd", "fvd_floor", "fsd", "fsd_floor") if k in m]
    return {k: m[k] for k in keys} if keys else {"distribution_distance": FSD_NOTICE}


def eval_model(
    model: str | Path | None,
    out: str | Path,
    seeds: int = 4,
    steps: int | None = None,
    cfg_scale: float | None = None,
    extra_metrics: dict | None = None,
    images: dict[str, Path] | None = None,
    title: str = "nanosora eval: prompt adherence",
    encoder: str | Path | None = None,
    i3d: str | Path | None = None,
    reference: str | Path | None = None,
    eta: float | None = None,
) -> Path:
    """Adherence, temporal and distribution report for a pipeline (default: the shipped model);
    returns report.html. ``steps`` (sampling steps) and ``eta`` (sampling noise, 0: deterministic)
    default to the pipeline's.

    ``extra_metrics`` and ``images`` (caption -> PNG, e.g. loss curves) are added to the report;
    ``encoder``/``i3d`` select the feature network of the Fréchet distance (none: skipped) and
    ``reference`` a manifest of real clips to compare with (default: shapes-world ground truth).
    """
    pipe = replace_cfg(Pipeline.load(model), steps=steps, eta=eta)
    steps = pipe.cfg.steps
    few = pipe.serves_few_step(steps)
    adh = evaluate_adherence(pipe, seeds=seeds, steps=steps, cfg_scale=cfg_scale, keep_all=True)
    prompts = [s["prompt"] for s in adh["samples"]]
    vm = _set_metrics(adh["all_videos"], prompts, encoder, i3d, pipe.cfg.fps, reference)
    for sample, row in zip(adh["samples"], vm["per_clip"]):
        sample |= {k: row[k] for k in ("flicker", "motion_smoothness", "object_persistence")}
    metrics = {
        "adherence_in_distribution": adh["in_distribution"],
        "adherence_heldout": adh["heldout"],
        "shape_fill": shape_fill(adh["samples"]),
        "temporal": vm["temporal"],
        **_distance_metrics(vm),
        "seeds": seeds,
        "steps": steps,
        # At few steps the distilled transformer samples: guidance built in, its own noise share.
        "transformer": "few-step" if few else "main",
        "cfg_scale": None if few else cfg_scale or pipe.cfg.cfg_scale,
        "eta": pipe.cfg.few_step_eta if few else pipe.cfg.eta,
        "dit_params_m": round(pipe.dit.num_params() / 1e6, 2),
        "vae_params_m": round(sum(p.numel() for p in pipe.vae.parameters()) / 1e6, 2),
        **(extra_metrics or {}),
    }
    tables = {
        f"confusion: {attr} (rows prompted, columns read; last = none)": [
            {"prompted": lab, **{c: int(v) for c, v in zip((*labels, "none"), row)}}
            for lab, row in zip(labels, confusion(adh["samples"], attr, labels))
        ]
        for attr, labels in (("color", tuple(COLORS)), ("shape", SHAPES), ("direction", DIRECTIONS))
    }
    tables["samples"] = adh["samples"]
    videos = {}
    for split in ("in_distribution", "heldout"):
        prompts = [s["prompt"] for s in adh["samples"] if s["split"] == split and s["seed"] < 1000]
        videos[f"{split} (seed 0)"] = list(zip(prompts, adh["videos"][split]))
    print(f"adherence in-distribution {adh['in_distribution']}, held-out {adh['heldout']}")
    charts = {
        **(images or {}),
        "temporal metrics per clip": _temporal_chart(vm["per_clip"], Path(out)),
    }
    return write_report(Path(out), title, metrics, tables, videos, charts, fps=pipe.cfg.fps)[1]


def eval_vae(
    vae_dir: str | Path,
    manifest: str | Path,
    out: str | Path,
    max_clips: int = 256,
    lpips: str | Path | None = None,
) -> Path:
    """Reconstruction report for a VAE run on any manifest; returns report.html.

    ``lpips``: a TorchScript perceptual network (``perceptual.py``) adds the perceptual distance.
    Rows whose video is missing or corrupt are listed under "skipped files" and left out.
    """
    net = load_perceptual(lpips) if lpips is not None else None  # fail before the slow part
    vae = load_vae(vae_dir)
    # Clips are shaped like the VAE's training data when its run config says so.
    data = yaml.safe_load((Path(vae_dir) / "config.yaml").read_text()).get("data", {})
    shape = [
        data.get(k, d) for k, d in (("num_frames", 17), ("height", 64), ("width", 64), ("fps", 8.0))
    ]
    clips = ClipWindowDataset(manifest, *shape, crop="none")
    distance = functools.partial(perceptual_distance, net) if net is not None else None
    m = reconstruction_metrics(vae, clips, max_clips=max_clips, perceptual=distance)
    for row in m["skipped"]:
        print(f"skipped row {row['index']}: {row['reason']}")
    videos = []
    with torch.no_grad():
        for i in m["worst"]:
            x = clips[i]["video"][None]
            rec = vae.decode(vae.encode(x)).clamp(-1, 1)[0]
            pair = np.concatenate([tensor_to_frames(x[0]), tensor_to_frames(rec)], axis=2)
            videos.append((f"clip {i}: original | reconstruction", pair))
    metrics = {"psnr": m["psnr"], "ssim": m["ssim"], "clips": m["clips"], "probe": m["probe"]}
    metrics |= {"perceptual": m["perceptual"]} if net is not None else {}
    metrics["skipped"] = len(m["skipped"])
    return write_report(
        Path(out),
        "nanosora eval: VAE reconstruction",
        metrics,
        {"per clip": m["per_clip"], "skipped files": m["skipped"]},
        {"worst clips": videos},
        {},
    )[1]


def eval_videos(
    manifest: str | Path,
    out: str | Path,
    encoder: str | Path | None = None,
    i3d: str | Path | None = None,
    max_clips: int | None = None,
    fps: float = 8.0,
    reference: str | Path | None = None,
) -> Path:
    """Report for clips on disk: a manifest (``path``, ``text``) of generated videos; returns
    report.html. Temporal quality per clip, probe adherence of shapes prompts, and the Fréchet
    distance (``encoder``/``i3d``) to ``reference`` (a manifest of real clips) or, by default, to
    shapes-world ground truth for the same prompts.

    Unreadable rows (missing, empty, corrupt) are printed, listed under "skipped files" and left
    out; the set's frame count and resolution are those of the first readable clip.
    """
    _feature_net(encoder, i3d)  # a wrong path fails before decoding anything
    df = read_manifest(manifest).reset_index(drop=True)
    if max_clips is not None:
        df = df.iloc[:max_clips]
    paths = resolve_paths(df, manifest).tolist()
    shape = None
    for p in paths:
        try:
            info = probe(p)
            shape = (info.num_frames, info.height, info.width)
            break
        except VideoError:
            continue
    if shape is None:
        raise ValueError(f"no readable video among the {len(paths)} rows of {manifest}")
    videos, kept, skipped = load_videos(paths, num_frames=shape[0], size=shape[1:])
    for row in skipped:
        print(f"skipped row {row['index']}: {row['reason']}")
    prompts = df["text"].astype(str).iloc[kept].tolist()
    m = _set_metrics(videos, prompts, encoder, i3d, fps, reference)
    for row, i in zip(m["per_clip"], kept):
        row["index"] = i  # the manifest row, not the position among readable clips
    metrics = {
        "clips": m["clips"],
        "skipped": len(skipped),
        "frames_height_width": list(shape),
        "adherence": m["adherence"],
        "temporal": m["temporal"],
        **_distance_metrics(m),
    }
    print({k: v for k, v in metrics.items() if k != "adherence"} | {"adherence": m["adherence"]})
    grid = [(f"{r['index']}: {r['prompt']}", v) for r, v in zip(m["per_clip"][:24], videos)]
    return write_report(
        Path(out),
        "nanosora eval: videos",
        metrics,
        {"per clip": m["per_clip"], "skipped files": skipped},
        {"samples": grid},
        {"temporal metrics per clip": _temporal_chart(m["per_clip"], Path(out))},
        fps=fps,
    )[1]
