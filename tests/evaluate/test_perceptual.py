"""Perceptual distance from a local TorchScript network (a tiny random LPIPS-like net here: no
real LPIPS weights exist on this machine)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nanosora.evaluate.perceptual import load_perceptual, perceptual_distance


class TinyLPIPS(nn.Module):
    """LPIPS's structure at toy size: conv features, unit-normalised per pixel, squared
    difference weighted per channel, spatial mean -> (N, 1, 1, 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.weights = nn.Parameter(torch.rand(1, 8, 1, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = self.features(x), self.features(y)
        fx = fx / (fx.norm(dim=1, keepdim=True) + 1e-10)
        fy = fy / (fy.norm(dim=1, keepdim=True) + 1e-10)
        return (self.weights * (fx - fy) ** 2).sum(1, keepdim=True).mean((2, 3), keepdim=True)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    net = TinyLPIPS().eval()
    x = torch.zeros(1, 3, 16, 16)
    path = tmp_path_factory.mktemp("lpips") / "tiny_lpips.pt"
    torch.jit.trace(net, (x, x)).save(str(path))
    return net, path


def test_loaded_network_matches_the_original_framewise(saved):
    net, path = saved
    loaded = load_perceptual(path)
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 5, 16, 16, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    d = perceptual_distance(loaded, a, b, chunk=3)  # chunks cut across videos
    assert d.shape == (2,) and d.dtype == torch.float64
    with torch.no_grad():
        want = [
            torch.stack([net(a[i, :, t][None], b[i, :, t][None]).reshape(()) for t in range(5)])
            .double()
            .mean()
            for i in range(2)
        ]
    torch.testing.assert_close(d, torch.stack(want), rtol=1e-5, atol=1e-7)
    assert float(d.min()) > 0
    torch.testing.assert_close(
        perceptual_distance(loaded, a, a), torch.zeros(2, dtype=torch.float64)
    )
    stronger = (a + 1.0 * torch.randn(a.shape, generator=g)).clamp(-1, 1)
    assert (perceptual_distance(loaded, a, stronger) > d).all()


def test_missing_weights_and_bad_shapes(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        load_perceptual(tmp_path / "lpips_alex.pt")
    with pytest.raises(ValueError, match="one shape"):
        perceptual_distance(saved[0], torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 3, 8, 8))
