"""Causal VAE invariants: frame arithmetic, causality, normalisation, shapes."""

import dataclasses

import pytest
import torch

from nanosora.config import VAEConfig
from nanosora.models.vae import CausalConv3d, Conv3d, FrameNorm, VideoVAE, kl_divergence

TINY = VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4)


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return VideoVAE(TINY).eval()


@pytest.mark.parametrize("frames, latent", [(1, 1), (5, 2), (9, 3), (17, 5), (33, 9)])
def test_frame_arithmetic(vae, frames, latent):
    assert vae.latent_frames(frames) == latent
    x = torch.randn(1, 3, frames, 16, 16)
    z = vae.encode(x)
    assert z.shape == (1, 4, latent, 2, 2)
    assert vae.decode(z).shape == x.shape


def test_not_4k_plus_1_is_an_error(vae):
    with pytest.raises(ValueError, match="4k\\+1"):
        vae.encode(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="divisible by 8"):
        vae.latent_shape(17, 60, 64)


@torch.no_grad()
def test_encoder_is_causal(vae):
    """Changing pixel frame k leaves latent frames that only cover frames < k unchanged."""
    x = torch.randn(1, 3, 17, 16, 16)
    z = vae.encode(x)
    for k in (1, 5, 9, 13):
        y = x.clone()
        y[:, :, k:] = torch.randn_like(y[:, :, k:])
        w = vae.encode(y)
        first_affected = (k - 1) // 4 + 1  # latent frame i covers pixel frames 4i-3 .. 4i
        torch.testing.assert_close(w[:, :, :first_affected], z[:, :, :first_affected])
        assert not torch.allclose(w[:, :, first_affected:], z[:, :, first_affected:])


@torch.no_grad()
def test_decoder_is_causal(vae):
    z = torch.randn(1, 4, 5, 2, 2)
    x = vae.decode(z)
    w = z.clone()
    w[:, :, 3:] += 1.0
    y = vae.decode(w)
    # Latent frame 3 first influences pixel frame 4*3-3 = 9.
    torch.testing.assert_close(y[:, :, :9], x[:, :, :9])
    assert not torch.allclose(y[:, :, 9:], x[:, :, 9:])


def test_frame_norm_does_not_mix_time():
    norm = FrameNorm(6)
    x = torch.randn(2, 6, 5, 4, 4)
    y = x.clone()
    y[:, :, 3] *= 100
    torch.testing.assert_close(norm(x)[:, :, :3], norm(y)[:, :, :3])


def test_causal_conv_stride_two():
    conv = CausalConv3d(2, 2, stride=1, stride_t=2)
    assert conv(torch.randn(1, 2, 9, 4, 4)).shape[2] == 5


def test_normalize_round_trip(vae):
    vae.calibrate(torch.randn(8, 4, 3, 2, 2) * 3 + 1)
    z = torch.randn(2, 4, 3, 2, 2)
    torch.testing.assert_close(vae.denormalize(vae.normalize(z)), z)
    assert vae.latent_std.mean() > 2.0  # calibration took the data's scale


def test_calibrated_latents_are_standardised():
    torch.manual_seed(1)
    vae = VideoVAE(TINY)
    x = torch.rand(16, 3, 5, 16, 16) * 2 - 1
    vae.calibrate(vae.encode_moments(x)[0])
    z = vae.encode(x)
    assert abs(z.mean().item()) < 1e-4
    assert abs(z.std().item() - 1.0) < 0.05


def test_kl_zero_for_standard_normal():
    assert kl_divergence(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0
    assert kl_divergence(torch.ones(3, 4), torch.zeros(3, 4)).item() == pytest.approx(0.5)


@pytest.mark.parametrize(
    "kw", [dict(kernel_size=3, padding=(0, 1, 1)), dict(kernel_size=3, stride=(2, 2, 2), padding=(0, 1, 1)), dict(kernel_size=1)]
)  # fmt: skip
def test_inference_convolution_matches_torch(kw):
    """The oneDNN inference path gives nn.Conv3d's output; with autograd it is nn.Conv3d's."""
    torch.manual_seed(0)
    conv = Conv3d(6, 10, **kw)
    x = torch.randn(2, 6, 5, 12, 12)
    reference = torch.nn.Conv3d.forward(conv, x)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), reference)
    torch.testing.assert_close(conv(x), reference)


def test_widened_vae_starts_as_the_narrow_one():
    """load_widened: the old channels keep their means, log-variances and statistics; the new
    ones are silent in the decoder, so reconstructions are the narrow VAE's at the start."""
    torch.manual_seed(0)
    narrow = VideoVAE(TINY).eval()
    narrow.calibrate(torch.randn(4, 4, 3, 2, 2) * 2 + 1)
    wide = VideoVAE(dataclasses.replace(TINY, latent_channels=8)).eval()
    wide.load_widened(narrow.state_dict())
    x = torch.rand(2, 3, 9, 16, 16) * 2 - 1
    with torch.no_grad():
        mean, logvar = narrow.encode_moments(x)
        wide_mean, wide_logvar = wide.encode_moments(x)
        assert torch.equal(wide_mean[:, :4], mean) and torch.equal(wide_logvar[:, :4], logvar)
        assert wide_mean[:, 4:].abs().max() > 0  # the new channels carry something to learn from
        torch.testing.assert_close(wide.decode(wide.encode(x)), narrow.decode(narrow.encode(x)))
    with pytest.raises(ValueError, match="fewer latent channels"):
        narrow.load_widened(wide.state_dict())
