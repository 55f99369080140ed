"""How well a VAE reproduces clips: PSNR, SSIM and (on the shapes world) the probe's accuracy.

The probe matters as much as PSNR: a VAE that turns triangles into circles caps every later
prompt-adherence score, however good its PSNR looks.
"""

from __future__ import annotations

import numpy as np
import torch

from nanosora.data.datasets import ManifestClips, tensor_to_frames
from nanosora.evaluate.metrics import psnr, ssim
from nanosora.models.vae import VideoVAE


@torch.no_grad()
def reconstruction_metrics(
    vae: VideoVAE, clips: ManifestClips, max_clips: int = 256, batch_size: int = 8
) -> dict:
    """Per-clip and mean PSNR/SSIM of ``vae`` on the first ``max_clips`` clips.

    When the manifest has the shapes attribute columns, also the share of reconstructions whose
    colour, shape and direction the probe reads correctly (each attribute and all three).
    Returns ``{"psnr", "ssim", "per_clip": [...], "probe": {...} | None, "worst": [indices]}``.
    """
    from nanosora.shapes.probe import probe_frames

    vae.eval()
    n = min(max_clips, len(clips))
    has_attrs = {"color", "shape", "direction"} <= set(clips.df.columns)
    per_clip: list[dict] = []
    for lo in range(0, n, batch_size):
        idx = list(range(lo, min(n, lo + batch_size)))
        x = torch.stack([clips[i]["video"] for i in idx])
        rec = vae.decode(vae.encode(x)).clamp(-1, 1)
        p, s = psnr(rec, x), ssim(rec, x)
        for j, i in enumerate(idx):
            row = {"index": i, "psnr": float(p[j]), "ssim": float(s[j])}
            if has_attrs:
                got = probe_frames(tensor_to_frames(rec[j]))
                want = clips.df.iloc[i]
                row |= {a: getattr(got, a) == want[a] for a in ("color", "shape", "direction")}
            per_clip.append(row)
    finite = [r["psnr"] for r in per_clip if np.isfinite(r["psnr"])]
    out: dict = {
        "clips": n,
        "psnr": float(np.mean(finite)) if finite else float("inf"),
        "ssim": float(np.mean([r["ssim"] for r in per_clip])),
        "per_clip": per_clip,
        "worst": [r["index"] for r in sorted(per_clip, key=lambda r: r["psnr"])[:4]],
        "probe": None,
    }
    if has_attrs:
        acc = {a: float(np.mean([r[a] for r in per_clip])) for a in ("color", "shape", "direction")}
        acc["all"] = float(
            np.mean([r["color"] and r["shape"] and r["direction"] for r in per_clip])
        )
        out["probe"] = acc
    return out
