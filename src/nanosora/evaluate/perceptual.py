"""Perceptual distance (LPIPS-style) between videos, with a network loaded from a local file.

LPIPS (Zhang et al. 2018) needs ImageNet-pretrained backbone weights that cannot be downloaded
here, so nothing is bundled: ``load_perceptual`` takes a TorchScript file holding a module with
LPIPS's call signature, ``net(x, y)`` on two ``(N, 3, H, W)`` image batches in [-1, 1] returning
one distance per pair (``(N,)`` or ``(N, 1, 1, 1)``). The ``lpips`` package's model exports to
exactly that on a machine that has its weights::

    import lpips, torch
    net = lpips.LPIPS(net="alex").eval()
    x = torch.zeros(1, 3, 64, 64)
    torch.jit.trace(net, (x, x)).save("lpips_alex.pt")

A video's distance is the mean over its frames (each frame is an image pair, as in the
frame-wise LPIPS that video VAE papers report). Lower is better.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from nanosora.evaluate.features import load_torchscript


def load_perceptual(path: str | Path) -> torch.jit.ScriptModule:
    """The perceptual network from a local TorchScript file (see module docstring)."""
    return load_torchscript(path, "give a TorchScript export of an LPIPS-style network")


@torch.no_grad()
def perceptual_distance(
    net: torch.nn.Module | torch.jit.ScriptModule, a: Tensor, b: Tensor, chunk: int = 64
) -> Tensor:
    """Per-video mean of the per-frame distance ``net(a_t, b_t)``.

    Args:
        a, b: (B, C, T, H, W) in [-1, 1], the same shape.
    Returns:
        (B,) float64.
    """
    if a.shape != b.shape or a.ndim != 5:
        raise ValueError(
            f"expected two (B, C, T, H, W) videos of one shape, got {a.shape}, {b.shape}"
        )
    B, C, T, H, W = a.shape
    # (B, C, T, H, W) -> (B*T, C, H, W): every frame pair is one image pair.
    x = a.float().permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
    y = b.float().permute(0, 2, 1, 3, 4).reshape(B * T, C, H, W)
    d = torch.cat(
        [net(x[i : i + chunk], y[i : i + chunk]).reshape(-1) for i in range(0, B * T, chunk)]
    )
    if d.numel() != B * T:
        raise ValueError(f"perceptual network returned {d.numel()} values for {B * T} image pairs")
    return d.double().view(B, T).mean(1)
