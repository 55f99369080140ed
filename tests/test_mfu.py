"""bench/mfu.py's analytic FLOP count equals torch's flop counter on the real DiT forward."""

import importlib.util
from pathlib import Path

import pytest
import torch

from nanosora.config import DiTConfig
from nanosora.models.dit import VideoDiT

spec = importlib.util.spec_from_file_location("mfu", Path(__file__).parents[1] / "bench/mfu.py")
mfu = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mfu)


@pytest.mark.parametrize("attention", ["full", "factorized"])
@pytest.mark.parametrize("latent", [(4, 3, 4, 6), (4, 1, 8, 8)])
@pytest.mark.parametrize("refiner", [0, 2])
def test_analytic_forward_flops_match_the_counter(attention: str, latent: tuple, refiner) -> None:
    cfg = DiTConfig(
        in_channels=4,
        dim=32,
        depth=2,
        heads=2,
        text_dim=24,
        attention=attention,
        text_refiner=refiner,
    )
    model, batch, L = VideoDiT(cfg), 3, 5
    x, text = torch.randn(batch, *latent), torch.randn(batch, L, cfg.text_dim)
    mask = torch.ones(batch, L, dtype=torch.bool)

    def forward() -> None:
        with torch.no_grad():
            model(x, torch.rand(batch), text, mask)

    grid = (latent[1], latent[2] // 2, latent[3] // 2)
    assert mfu.dit_flops(cfg, batch, grid, L) == mfu.counted_flops(forward)


def test_training_step_flops_are_three_forwards_minus_data_input_gradients() -> None:
    cfg = DiTConfig(in_channels=4, dim=32, depth=2, heads=2)
    batch, n, L, d, e = 2, 3 * 2 * 2, mfu.TEXT_LEN, cfg.dim, cfg.text_dim
    _, step, _ = mfu.make_step(cfg, batch, (4, 3, 4, 4), bf16=False)
    # The backward computes no gradient for the inputs of layers fed by data (not parameters):
    # the patch embedding, each block's text key/value map, and the first time and text MLPs.
    skipped = 2 * batch * (n * 16 * d + cfg.depth * L * e * 2 * d + 256 * d + e * d)
    three_forwards = 3 * mfu.dit_flops(cfg, batch, (3, 2, 2), L)
    assert mfu.counted_flops(step) == three_forwards - skipped


def test_vae_step_trains_and_its_flops_are_counted():
    vae, step = mfu.make_vae_step("shapes-4x8x8", 1, 5, 16, bf16=False, device=mfu.CPU)
    before = [p.detach().clone() for p in vae.parameters()]
    assert mfu.counted_flops(step) > 0  # the convolutions, forward and backward
    assert any(not torch.equal(a, b) for a, b in zip(before, vae.parameters()))
