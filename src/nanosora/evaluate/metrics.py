"""The Fréchet distance behind FID/FVD, as pure functions over feature sets.

Pixel fidelity (PSNR, SSIM) is ``nanosora.video.metrics``: the trainers and the story pipeline
use it too.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

Array = Tensor | np.ndarray


def feature_stats(features: Array) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of a feature set, as used by FID/FVD.

    Args:
        features: (N, D), N >= 2.
    Returns:
        mu: (D,) float64; sigma: (D, D) float64, unbiased (N - 1) covariance like pytorch-fid.
    """
    f = features.detach().cpu().numpy() if isinstance(features, Tensor) else np.asarray(features)
    f = f.astype(np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"feature_stats expects (N, D) features with N >= 2, got {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric PSD matrix via eigh; tiny negative eigenvalues are round-off."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: Array, sigma1: Array, mu2: Array, sigma2: Array) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982).

    d^2 = |mu1 - mu2|^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)).

    Tr((S1 S2)^(1/2)) is computed as Tr((S1^(1/2) S2 S1^(1/2))^(1/2)): the two matrices are
    similar, and the second is symmetric PSD, so an eigendecomposition gives its root without
    the complex round-off that scipy.linalg.sqrtm produces on the non-symmetric S1 S2.

    Args:
        mu1, mu2: (D,); sigma1, sigma2: (D, D). Any float type; computed in float64.
    Returns:
        The squared distance, a Python float >= 0 (up to round-off).
    """
    m1, s1, m2, s2 = (
        (x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)).astype(np.float64)
        for x in (mu1, sigma1, mu2, sigma2)
    )
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"expected mu (D,) and sigma (D, D): got {m1.shape}, {s1.shape}, {m2.shape}, {s2.shape}"
        )
    root1 = _sqrt_psd(s1)
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_covmean = np.sqrt(np.clip(eig, 0.0, None)).sum()
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
