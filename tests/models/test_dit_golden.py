"""The DiT reproduces reference outputs on fixed inputs (tests/fixtures/dit/golden.safetensors,
written by make_golden.py there): speed work on the model must not change what it computes."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nanosora.config import DiTConfig
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import Pipeline

PROMPTS = ["a red circle moving left", "a blue square moving up", ""]


def shipped_inputs(text_encoder):
    """A CFG-like batch of 3 for the shipped model: latents, levels, per-frame levels, text."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 8, 5, 8, 8, generator=g)
    s = torch.tensor([0.9, 0.5, 0.1])
    frames = torch.tensor([[0.0, 0.7, 0.7, 0.7, 0.7]]).repeat(3, 1)
    text, mask = text_encoder(PROMPTS)
    return z, s, frames, text, mask


def factorized_model() -> VideoDiT:
    """A small factorised-attention DiT with every weight non-zero (seeded)."""
    cfg = DiTConfig(in_channels=4, dim=48, depth=2, heads=2, text_dim=16, attention="factorized")
    g = torch.Generator().manual_seed(0)
    m = VideoDiT(cfg).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return m


def tiny_inputs():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2, 4, 3, 4, 6, generator=g)
    text = torch.randn(2, 5, 16, generator=g)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    return z, torch.tensor([0.8, 0.3]), text, mask


GOLDEN = Path(__file__).parents[1] / "fixtures" / "dit" / "golden.safetensors"


@pytest.fixture(scope="module")
def golden():
    return load_file(str(GOLDEN))


@pytest.mark.shipped_model
def test_shipped_model_outputs_unchanged(golden):
    """The shipped DiT gives the reference velocities (clip-level and per-frame levels)."""
    pipe = Pipeline.load(None)
    z, s, frames, text, mask = shipped_inputs(pipe.text_encoder)
    with torch.no_grad():
        torch.testing.assert_close(pipe.dit(z, s, text, mask), golden["shipped"])
        torch.testing.assert_close(pipe.dit(z, frames, text, mask), golden["shipped_frames"])
        # Text encoded once for every step, as the sampler does, gives the same velocities.
        context = pipe.dit.encode_text(text, mask)
        torch.testing.assert_close(pipe.dit(z, s, context), golden["shipped"])


def test_factorized_outputs_unchanged(golden):
    m = factorized_model()
    z, s, text, mask = tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(m(z, s, text, mask), golden["factorized"])
