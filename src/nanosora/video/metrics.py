"""Pixel fidelity between two videos as pure functions: PSNR and SSIM.

Inputs may be torch tensors or numpy arrays: videos in [-1, 1] (or any range given as
``data_range``) laid out as (B, C, T, H, W); images (B, C, H, W) are accepted as one-frame videos.
Each returns one value per sample, of the same kind (tensor or array) as the input, in float64:
the metrics are averaged over many samples and float32 sums would drift.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Array = Tensor | np.ndarray


def _as_video_pair(a: Array, b: Array) -> tuple[Tensor, Tensor]:
    """Both inputs as float64 tensors of shape (B, C, T, H, W)."""
    x = torch.as_tensor(a).detach().to(torch.float64)
    y = torch.as_tensor(b).detach().to(device=x.device, dtype=torch.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.ndim == 4:
        x, y = x.unsqueeze(2), y.unsqueeze(2)  # (B, C, H, W) -> (B, C, 1, H, W)
    if x.ndim != 5:
        raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W), got {tuple(x.shape)}")
    return x, y


def _like(value: Tensor, reference: Array) -> Array:
    """Return ``value`` as numpy if the caller passed numpy, else as a CPU tensor."""
    value = value.cpu()
    return value.numpy() if isinstance(reference, np.ndarray) else value


def psnr(a: Array, b: Array, data_range: float = 2.0) -> Array:
    """Peak signal-to-noise ratio in dB, per sample.

    Args:
        a, b: (B, C, T, H, W) videos (or (B, C, H, W) images); data_range = max - min of the
            signal (2 for [-1, 1]).
    Returns:
        (B,) float64; +inf where a sample is reproduced exactly.
    """
    x, y = _as_video_pair(a, b)
    mse = (x - y).pow(2).flatten(1).mean(1)
    # 10 log10(R^2 / 0) = +inf without a special case.
    return _like(10.0 * torch.log10(data_range**2 / mse), a)


def _gaussian_window(size: int, sigma: float) -> Tensor:
    """Normalised 1D Gaussian taps, (size,) float64."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filter: (N, 1, H, W) -> (N, 1, H - k + 1, W - k + 1).

    On CPU OpenCV filters the images as the channels of one array, faster than float64 conv2d."""
    k = window.numel()
    if x.device.type != "cpu":
        x = F.conv2d(x, window.view(1, 1, 1, k))
        return F.conv2d(x, window.view(1, 1, k, 1))
    taps, r = window.numpy(), k // 2
    n, _, h, w = x.shape
    images = x.numpy().reshape(n, h, w).transpose(1, 2, 0)  # (H, W, N): N channels
    out = np.empty((h - k + 1, w - k + 1, n))
    for c in range(0, n, 128):  # the most channels OpenCV takes in one array
        chunk = np.ascontiguousarray(images[..., c : c + 128])
        full = cv2.sepFilter2D(chunk, cv2.CV_64F, taps, taps).reshape(h, w, -1)
        out[..., c : c + 128] = full[r : h - r, r : w - r]
    return torch.from_numpy(out.transpose(2, 0, 1).reshape(n, 1, h - k + 1, w - k + 1))


def ssim(
    a: Array,
    b: Array,
    data_range: float = 2.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Array:
    """Structural similarity (Wang et al. 2004, IEEE TIP 13(4)), per sample.

    The paper's setting: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, local
    statistics as Gaussian-weighted (population) moments, the SSIM map averaged over the 'valid'
    region only (no padding, as in the authors' MATLAB code and skimage with gaussian_weights).
    Each channel of each frame gets its own map; the per-sample value averages them all.

    Args:
        a, b: (B, C, T, H, W) videos (or (B, C, H, W) images), H and W >= window_size.
    Returns:
        (B,) float64, 1 for identical inputs.
    """
    x, y = _as_video_pair(a, b)
    B, C, T, H, W = x.shape
    if H < window_size or W < window_size:
        raise ValueError(f"ssim needs H, W >= {window_size}, got {H}x{W}")
    window = _gaussian_window(window_size, sigma).to(x.device)
    # 1. Every (sample, channel, frame) is one single-channel image: (B*C*T, 1, H, W).
    x = x.reshape(B * C * T, 1, H, W)
    y = y.reshape(B * C * T, 1, H, W)
    # 2. Local moments, filtered in one batched pass: E[x], E[y], E[x^2], E[y^2], E[xy].
    n = x.shape[0]
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y]), window)
    mu_x, mu_y, xx, yy, xy = moments.split(n)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    # 3. The SSIM map (paper eq. 13), stabilised by C1, C2 for flat regions.
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    # 4. Mean over pixels, then over channels and frames, per sample.
    per_image = (num / den).flatten(1).mean(1)
    return _like(per_image.view(B, C * T).mean(1), a)
