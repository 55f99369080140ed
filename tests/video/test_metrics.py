"""PSNR and SSIM against closed forms and an independent reference implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from nanosora.video.metrics import psnr, ssim


def _videos(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(2, 3, 4, 24, 20, generator=g) * 2 - 1
    # A structured distortion: a blurred-ish, noisy, rescaled copy.
    b = (0.8 * a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    return a, b


def test_psnr_identical_is_inf() -> None:
    a, _ = _videos()
    assert torch.isinf(psnr(a, a)).all()


def test_psnr_constant_offset() -> None:
    a = _videos()[0].double()  # float64, so the offset is 0.1 to round-off
    values = psnr(a, a + 0.1)
    # MSE = 0.01, range 2: 10 log10(4 / 0.01) = 10 log10(400).
    assert values.shape == (2,) and values.dtype == torch.float64
    torch.testing.assert_close(
        values, torch.full((2,), 10 * math.log10(400), dtype=torch.float64), rtol=0, atol=1e-9
    )


def test_psnr_per_sample_and_numpy() -> None:
    a, b = _videos()
    b = b.clone()
    b[1] = a[1] + 0.5  # sample 1 only: MSE 0.25 -> 10 log10(16)
    values = psnr(a.numpy(), b.numpy())
    assert isinstance(values, np.ndarray)
    assert values[1] == pytest.approx(10 * math.log10(16))
    assert values[0] != pytest.approx(values[1])


def _ssim_reference(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. 2004 SSIM of one 2D image pair, written out with scipy's Gaussian filter."""

    # truncate=3.5 with sigma 1.5 gives the 11-tap window; cropping 5 px keeps the valid region.
    def blur(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, sigma=1.5, truncate=3.5)[5:-5, 5:-5]

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean())


def test_ssim_identical_is_one() -> None:
    a, _ = _videos()
    torch.testing.assert_close(ssim(a, a), torch.ones(2, dtype=torch.float64))


def test_ssim_matches_reference() -> None:
    a, b = _videos()
    x, y = a.double().numpy(), b.double().numpy()
    expected = [
        np.mean([_ssim_reference(x[i, c, t], y[i, c, t], 2.0) for c in range(3) for t in range(4)])
        for i in range(2)
    ]
    got = ssim(a, b)
    assert 0.1 < float(got.min()) < float(got.max()) < 0.9  # a non-trivial value is compared
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_ssim_images_and_small_input() -> None:
    a, b = _videos()
    frame = ssim(a[:, :, 0], b[:, :, 0])
    torch.testing.assert_close(frame, ssim(a[:, :, :1], b[:, :, :1]))
    with pytest.raises(ValueError, match="H, W >= 11"):
        ssim(torch.zeros(1, 3, 1, 8, 8), torch.zeros(1, 3, 1, 8, 8))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(a, b[:1])
