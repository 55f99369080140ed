"""How well a VAE reproduces clips: PSNR, SSIM, an optional perceptual distance, and (on the shapes
world) the probe's accuracy. The VAE trainer's final validation and `nanosora eval --vae` share it.

The probe matters as much as PSNR: a VAE that turns triangles into circles caps every later
prompt-adherence score, however good its PSNR looks. Clips whose file is missing or cannot be
decoded are listed in ``skipped`` with the reason, and the rest are evaluated.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from nanosora.data.datasets import ClipWindowDataset, frames_to_tensor, tensor_to_frames
from nanosora.models.vae import VideoVAE
from nanosora.shapes.probe import probe_frames
from nanosora.video.io import VideoError
from nanosora.video.metrics import psnr, ssim


def readable_clips(clips: ClipWindowDataset, n: int) -> tuple[dict[int, np.ndarray], list[dict]]:
    """Frames (uint8 (T, H, W, C)) of the first ``n`` rows whose video decodes, by row index, and
    ``{index, path, reason}`` for the others (missing, empty or corrupt files)."""
    good: dict[int, np.ndarray] = {}
    skipped: list[dict] = []
    for i in range(n):
        try:
            good[i] = clips.frames(i)
        except VideoError as e:
            skipped.append({"index": i, "path": clips.paths[i], "reason": str(e)})
    return good, skipped


@torch.no_grad()
def reconstruction_metrics(
    vae: VideoVAE,
    clips: ClipWindowDataset,
    max_clips: int = 256,
    batch_size: int = 8,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Per-clip and mean PSNR/SSIM of ``vae`` on the first ``max_clips`` rows, and the
    ``perceptual`` distance (two (B, C, T, H, W) videos -> (B,)) when one is given.

    When the manifest has the shapes attribute columns, also the share of reconstructions whose
    colour, shape and direction the probe reads correctly (each attribute and all three).
    Returns ``{"clips", "psnr", "ssim", "perceptual", "per_clip": [...], "probe": {...} | None,
    "worst": [indices], "skipped": [{index, path, reason}]}``.
    """
    vae.eval()
    frames, skipped = readable_clips(clips, min(max_clips, len(clips)))
    good = list(frames)
    has_attrs = {"color", "shape", "direction"} <= set(clips.df.columns)
    per_clip: list[dict] = []
    for lo in range(0, len(good), batch_size):
        idx = good[lo : lo + batch_size]
        x = torch.stack([frames_to_tensor(frames[i]) for i in idx])
        rec = vae.decode(vae.encode(x)).clamp(-1, 1)
        p, s = psnr(rec, x), ssim(rec, x)
        lp = perceptual(rec, x) if perceptual is not None else None
        for j, i in enumerate(idx):
            row = {"index": i, "psnr": float(p[j]), "ssim": float(s[j])}
            if lp is not None:
                row["perceptual"] = float(lp[j])
            if has_attrs:
                got = probe_frames(tensor_to_frames(rec[j]))
                want = clips.df.iloc[i]
                row |= {a: getattr(got, a) == want[a] for a in ("color", "shape", "direction")}
            per_clip.append(row)
    if not per_clip:
        raise ValueError(f"no readable clips among the first {len(skipped)} rows: {skipped[:3]}")
    finite = [r["psnr"] for r in per_clip if np.isfinite(r["psnr"])]
    out: dict = {
        "clips": len(per_clip),
        "psnr": float(np.mean(finite)) if finite else float("inf"),
        "ssim": float(np.mean([r["ssim"] for r in per_clip])),
        "perceptual": float(np.mean([r["perceptual"] for r in per_clip]))
        if perceptual is not None
        else None,
        "per_clip": per_clip,
        "worst": [r["index"] for r in sorted(per_clip, key=lambda r: r["psnr"])[:4]],
        "probe": None,
        "skipped": skipped,
    }
    if has_attrs:
        acc = {a: float(np.mean([r[a] for r in per_clip])) for a in ("color", "shape", "direction")}
        acc["all"] = float(
            np.mean([r["color"] and r["shape"] and r["direction"] for r in per_clip])
        )
        out["probe"] = acc
    return out
