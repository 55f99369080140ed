"""The Fréchet distance against closed forms and scipy's reference formula."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from nanosora.evaluate.metrics import feature_stats, frechet_distance


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
