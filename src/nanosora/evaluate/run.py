"""`nanosora eval`: metrics for a generation pipeline or a VAE, written as report.json + report.html.

- ``--model DIR``: prompt adherence on the shapes world (in-distribution and held-out, per
  attribute and joint, confusion matrices) with the sample videos.
- ``--vae DIR --manifest M``: reconstruction PSNR/SSIM per clip and aggregate, the probe's
  accuracy on reconstructions when the manifest has shapes attributes, worst clips side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def eval_model(
    model: str | Path | None,
    out: str | Path,
    seeds: int = 4,
    steps: int = 25,
    cfg_scale: float | None = None,
    extra_metrics: dict | None = None,
    images: dict[str, Path] | None = None,
    title: str = "nanosora eval: prompt adherence",
) -> Path:
    """Adherence report for a pipeline (default: the shipped model); returns report.html.

    ``extra_metrics`` and ``images`` (caption -> PNG, e.g. loss curves) are added to the report.
    """
    from nanosora.evaluate.adherence import confusion, evaluate_adherence
    from nanosora.evaluate.report import write_report
    from nanosora.generate import Pipeline
    from nanosora.shapes.world import COLORS, DIRECTIONS, SHAPES

    pipe = Pipeline.load(model)
    adh = evaluate_adherence(pipe, seeds=seeds, steps=steps, cfg_scale=cfg_scale)
    metrics = {
        "adherence_in_distribution": adh["in_distribution"],
        "adherence_heldout": adh["heldout"],
        "seeds": seeds,
        "steps": steps,
        "cfg_scale": cfg_scale or pipe.cfg.cfg_scale,
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
    return write_report(Path(out), title, metrics, tables, videos, images or {}, fps=pipe.cfg.fps)[
        1
    ]


def eval_vae(
    vae_dir: str | Path, manifest: str | Path, out: str | Path, max_clips: int = 256
) -> Path:
    """Reconstruction report for a VAE run on any manifest; returns report.html."""
    import torch
    import yaml

    from nanosora.data.datasets import ManifestClips, tensor_to_frames
    from nanosora.evaluate.reconstruction import reconstruction_metrics
    from nanosora.evaluate.report import write_report
    from nanosora.train.vae import load_vae

    vae = load_vae(vae_dir)
    # Clips are shaped like the VAE's training data when its run config says so.
    data = yaml.safe_load((Path(vae_dir) / "config.yaml").read_text()).get("data", {})
    shape = [
        data.get(k, d) for k, d in (("num_frames", 17), ("height", 64), ("width", 64), ("fps", 8.0))
    ]
    clips = ManifestClips(manifest, *shape, in_memory=False)
    m = reconstruction_metrics(vae, clips, max_clips=max_clips)
    videos = []
    with torch.no_grad():
        for i in m["worst"]:
            x = clips[i]["video"][None]
            rec = vae.decode(vae.encode(x)).clamp(-1, 1)[0]
            pair = np.concatenate([tensor_to_frames(x[0]), tensor_to_frames(rec)], axis=2)
            videos.append((f"clip {i}: original | reconstruction", pair))
    metrics = {"psnr": m["psnr"], "ssim": m["ssim"], "clips": m["clips"], "probe": m["probe"]}
    return write_report(
        Path(out),
        "nanosora eval: VAE reconstruction",
        metrics,
        {"per clip": m["per_clip"]},
        {"worst clips": videos},
        {},
    )[1]
