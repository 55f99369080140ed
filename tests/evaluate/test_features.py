"""Feature networks for Fréchet distances: the shapes encoder (trained for seconds here) and the
I3D loading path (a tiny TorchScript stand-in with I3D's call signature: no real I3D weights
exist on this machine)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nanosora.evaluate.features import (
    EncoderConfig,
    load_encoder,
    load_i3d,
    train_encoder,
    video_features,
)
from nanosora.evaluate.metrics import feature_stats, frechet_distance
from nanosora.shapes.world import clip_rng, render, sample_spec

TINY = EncoderConfig(width=4, feature_dim=8, steps=6, batch_size=4, seed=3)


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory):
    return train_encoder(tmp_path_factory.mktemp("enc") / "run", TINY)


def _clips(n: int, seed: int) -> list[np.ndarray]:
    return [render(sample_spec(clip_rng(seed, i), "all")) for i in range(n)]


def test_encoder_run_dir_roundtrip(encoder_run):
    assert {p.name for p in encoder_run.iterdir()} == {
        "config.yaml",
        "model.safetensors",
        "metrics.jsonl",
    }
    log = [json.loads(line) for line in (encoder_run / "metrics.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 and set(log[-1]["accuracy"]) == {"color", "shape", "direction"}
    enc = load_encoder(encoder_run)
    clips = _clips(5, 0)
    f = video_features(enc, clips, batch_size=2)
    assert f.shape == (5, 8) and f.dtype == np.float64
    # Same run dir, same features; a different seed trains different weights.
    np.testing.assert_allclose(video_features(load_encoder(encoder_run), clips), f, rtol=1e-6)
    assert not np.allclose(video_features(enc, clips[:1] * 2)[0], f[1])


def test_training_is_deterministic(encoder_run, tmp_path):
    again = train_encoder(tmp_path / "again", TINY)
    assert (again / "model.safetensors").read_bytes() == (
        encoder_run / "model.safetensors"
    ).read_bytes()


def test_fsd_separates_degraded_clips(encoder_run):
    enc = load_encoder(encoder_run)
    ref, same, bad = _clips(24, 1), _clips(24, 2), _clips(24, 3)
    rng = np.random.default_rng(0)
    bad = [np.clip(v + rng.normal(0, 60, v.shape), 0, 255).astype(np.uint8) for v in bad]
    stats = [feature_stats(video_features(enc, s)) for s in (ref, same, bad)]
    assert frechet_distance(*stats[0], *stats[1]) < frechet_distance(*stats[0], *stats[2])


def test_missing_encoder_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="--train-encoder"):
        load_encoder(tmp_path)
    with pytest.raises(ValueError, match="positive"):
        EncoderConfig(steps=0)


class FakeI3D(nn.Module):
    """I3D's TorchScript interface: (B, 3, T, 224, 224) in [-1, 1] -> (B, 400) features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv3d(3, 400, (3, 16, 16), stride=(2, 16, 16))

    def forward(
        self,
        x: torch.Tensor,
        rescale: bool = False,
        resize: bool = False,
        return_features: bool = False,
    ) -> torch.Tensor:
        if x.shape[-1] != 224 or x.shape[-2] != 224 or rescale or resize or not return_features:
            raise ValueError("StyleGAN-V's protocol: 224x224 in [-1, 1], raw features")
        return self.conv(x).mean((2, 3, 4))


def test_i3d_loading_path(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(FakeI3D()).save(str(path))
    i3d = load_i3d(path)
    a, b = _clips(6, 4), _clips(6, 5)
    fa = video_features(i3d, a, i3d=True, batch_size=4)
    assert fa.shape == (6, 400)
    assert abs(frechet_distance(*feature_stats(fa), *feature_stats(fa))) < 1e-6
    fb = video_features(i3d, b, i3d=True)
    assert frechet_distance(*feature_stats(fa), *feature_stats(fb)) > 1e-3
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        load_i3d(tmp_path / "missing.pt")
