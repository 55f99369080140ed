"""Metrics against closed forms and independent reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from scipy.ndimage import gaussian_filter

from nanosora.evaluate.metrics import feature_stats, frechet_distance, psnr, ssim


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


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    """The pytorch-fid formula with scipy.linalg.sqrtm on S1 S2."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    f1 = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    f2 = rng.normal(0.3, 1.2, size=(500, 12)) @ rng.normal(size=(12, 12))
    mu1, s1 = feature_stats(f1)
    mu2, s2 = feature_stats(f2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours > 1.0
    assert ours == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_identical_is_zero_and_accepts_tensors() -> None:
    feats = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    mu, sigma = feature_stats(feats)
    assert mu.shape == (8,) and sigma.shape == (8, 8) and sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, np.cov(feats.double().numpy(), rowvar=False))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    assert abs(frechet_distance(torch.tensor(mu), torch.tensor(sigma), mu, sigma)) < 1e-8


def test_frechet_mean_shift_only() -> None:
    # Equal covariances: the distance is the squared distance between the means.
    sigma = np.diag([1.0, 2.0, 3.0])
    d = frechet_distance(np.zeros(3), sigma, np.array([1.0, 2.0, 0.0]), sigma)
    assert d == pytest.approx(5.0, abs=1e-10)


def test_feature_stats_errors() -> None:
    with pytest.raises(ValueError, match="N >= 2"):
        feature_stats(np.zeros((1, 4)))
    with pytest.raises(ValueError, match="mu"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_frechet_closed_form_on_fixed_gaussians() -> None:
    # N(mu1, I) vs N(mu2, 4 I) in d dims: |mu1 - mu2|^2 + d (1 + 4 - 2 * 2) = |dmu|^2 + d.
    d = 6
    mu1, mu2 = np.arange(d, dtype=float), np.zeros(d)
    expected = float(mu1 @ mu1) + d
    assert frechet_distance(mu1, np.eye(d), mu2, 4 * np.eye(d)) == pytest.approx(
        expected, rel=1e-12
    )
    assert _scipy_frechet(mu1, np.eye(d), mu2, 4 * np.eye(d)) == pytest.approx(expected, rel=1e-9)


def test_frechet_stable_with_fewer_samples_than_dimensions() -> None:
    # N < D: both covariances are singular, where sqrtm(S1 S2) is ill-conditioned. The eigen route
    # must still agree with scipy where scipy is accurate and stay finite and non-negative.
    rng = np.random.default_rng(3)
    f1, f2 = rng.normal(size=(20, 64)), rng.normal(0.5, 1.0, size=(20, 64))
    mu1, s1 = feature_stats(f1)
    mu2, s2 = feature_stats(f2)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours) and ours > 0
    assert ours == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-3)
    # Identical sets: 0 up to round-off relative to the total variance (Tr S1 + Tr S2 ~ 128).
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-7 * 2 * np.trace(s1)
