"""Causal video VAE: pixels (B, C, T, H, W) <-> latents (B, c, t, h, w).

Time is causal everywhere: every convolution pads only on the past side (replicating the first
frame), so latent frame i depends on pixel frames <= 4i. With 4x temporal compression a clip of
``4k+1`` frames maps to ``k+1`` latent frames: the first frame is encoded on its own, like an
image, and each later latent frame summarises four new frames (the CogVideoX / Open-Sora-Plan
convention, which makes joint image-video training free: an image is a 1-frame video).

Two choices that matter:
- Pixels are folded into channels (space-to-depth) before the first convolution. Convolutions
  at full resolution dominate the cost on a CPU; folding 2x2 pixels keeps the latent shape and
  makes a VAE step several times faster.
- Normalisation is per frame (``FrameNorm``). ``nn.GroupNorm`` over a (C, T, H, W) tensor
  mixes statistics across time and silently breaks causality.

Latent normalisation lives here: ``encode`` returns normalised latents, ``decode`` takes them.
The per-channel statistics are buffers, set once from data by ``calibrate``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from nanosora.config import VAEConfig


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs oneDNN's kernel for inference on a CPU.

    Without autograd, torch's CPU build routes float32 3D convolutions to its generic im2col
    kernel (``slow_conv3d``), 5-10x slower than oneDNN at the VAE's sizes; training already gets
    oneDNN. Same weights, same state dict, outputs equal within float tolerance.
    """

    def forward(self, x: Tensor) -> Tensor:
        inference = not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
        if inference and x.device.type == "cpu" and x.dtype == torch.float32:
            if self.padding_mode == "zeros" and isinstance(self.padding, tuple):
                return torch.mkldnn_convolution(
                    x.contiguous(), self.weight, self.bias, self.padding, self.stride,
                    self.dilation, self.groups,
                )  # fmt: skip
        return super().forward(x)


class CausalConv3d(nn.Module):
    """3D convolution that only looks at the past in time.

    The time axis is padded on the left by repeating the first frame (``kt - 1`` copies), the
    space axes symmetrically with zeros. With ``stride_t=2`` a clip of ``2k+1`` frames becomes
    ``k+1`` frames and output frame i sees input frames ``2i-2 .. 2i``.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, stride_t: int = 1):
        super().__init__()
        self.pad_t = kernel - 1
        self.conv = Conv3d(
            cin,
            cout,
            kernel,
            stride=(stride_t, stride, stride),
            padding=(0, kernel // 2, kernel // 2),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, Cin, T, H, W) -> (B, Cout, T', H', W')."""
        if self.pad_t:
            x = torch.cat([x[:, :, :1].expand(-1, -1, self.pad_t, -1, -1), x], dim=2)
        return self.conv(x)


class FrameNorm(nn.Module):
    """GroupNorm applied to each frame on its own (one group: statistics over C, H, W)."""

    def __init__(self, channels: int, groups: int = 1):
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) -> same shape; no information crosses frames."""
        b = x.shape[0]
        y = self.norm(rearrange(x, "B C T H W -> (B T) C H W"))
        return rearrange(y, "(B T) C H W -> B C T H W", B=b)


class ResBlock(nn.Module):
    """Pre-norm residual block of two causal convolutions."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = FrameNorm(cout), CausalConv3d(cout, cout)
        self.skip = Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, Cin, T, H, W) -> (B, Cout, T, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Halve H and W (and, causally, T: 2k+1 -> k+1) with one strided causal convolution."""

    def __init__(self, cin: int, cout: int, temporal: bool):
        super().__init__()
        self.conv = CausalConv3d(cin, cout, stride=2, stride_t=2 if temporal else 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W (and T: k+1 -> 2k+1, the first frame stays single), then convolve."""

    def __init__(self, cin: int, cout: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(cin, cout)

    def forward(self, x: Tensor) -> Tensor:
        if self.temporal:
            # Frame 0 is an image frame; every later latent frame expands into two.
            x = torch.cat([x[:, :, :1], x[:, :, 1:].repeat_interleave(2, dim=2)], dim=2)
        x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.fold = cfg.fold
        self.conv_in = CausalConv3d(cfg.in_channels * cfg.fold**2, widths[0])
        layers: list[nn.Module] = []
        for i, w in enumerate(widths):
            layers += [ResBlock(w, w) for _ in range(cfg.blocks_per_level)]
            if i < len(widths) - 1:
                layers.append(Downsample(w, widths[i + 1], cfg.temporal_down[i]))
        self.body = nn.Sequential(*layers, ResBlock(widths[-1], widths[-1]))
        self.norm_out = FrameNorm(widths[-1])
        self.conv_out = CausalConv3d(widths[-1], 2 * cfg.latent_channels)
        # Start with a narrow posterior: at logvar 0 the sampled latents are pure noise at init
        # and the decoder can only learn the mean frame until the encoder's means grow.
        with torch.no_grad():
            self.conv_out.conv.bias[cfg.latent_channels :].fill_(cfg.init_logvar)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, H, W) pixels -> (B, 2c, t, h, w) posterior mean and log-variance."""
        x = rearrange(x, "B C T (h p) (w q) -> B (C p q) T h w", p=self.fold, q=self.fold)
        x = self.body(self.conv_in(x))
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [cfg.base_channels * m for m in cfg.channel_mult]
        self.fold = cfg.fold
        self.conv_in = CausalConv3d(cfg.latent_channels, widths[-1])
        layers: list[nn.Module] = [ResBlock(widths[-1], widths[-1])]
        for i in reversed(range(len(widths))):
            layers += [ResBlock(widths[i], widths[i]) for _ in range(cfg.blocks_per_level)]
            if i > 0:
                layers.append(Upsample(widths[i], widths[i - 1], cfg.temporal_down[i - 1]))
        self.body = nn.Sequential(*layers)
        self.norm_out = FrameNorm(widths[0])
        self.conv_out = CausalConv3d(widths[0], cfg.in_channels * cfg.fold**2)

    def forward(self, z: Tensor) -> Tensor:
        """(B, c, t, h, w) raw latents -> (B, C, T, H, W) pixels."""
        x = self.body(self.conv_in(z))
        x = self.conv_out(F.silu(self.norm_out(x)))
        return rearrange(x, "B (C p q) T h w -> B C T (h p) (w q)", p=self.fold, q=self.fold)


class VideoVAE(nn.Module):
    """KL-regularised causal video autoencoder with latent normalisation built in."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        # Per-channel statistics of raw posterior means; identity until `calibrate` runs.
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    def encoder_parameters(self):
        """Parameters that shape the latent space (frozen by decoder-only fine-tuning)."""
        return self.encoder.parameters()

    # -- shape arithmetic ------------------------------------------------------------------
    def latent_frames(self, num_frames: int) -> int:
        """``4k+1`` pixel frames -> ``k+1`` latent frames (for the default 4x preset)."""
        f = self.cfg.temporal_factor
        if num_frames < 1 or (num_frames - 1) % f:
            raise ValueError(f"num_frames={num_frames} must be of the form {f}k+1")
        return (num_frames - 1) // f + 1

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(c, t, h, w) of the latents of a (T, H, W) clip."""
        s = self.cfg.spatial_factor
        if height % s or width % s:
            raise ValueError(f"frame size {height}x{width} must be divisible by {s}")
        return (self.cfg.latent_channels, self.latent_frames(num_frames), height // s, width // s)

    # -- posterior ---------------------------------------------------------------------------
    def encode_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, T, H, W) in [-1, 1] -> raw posterior mean and logvar, each (B, c, t, h, w)."""
        self.latent_shape(x.shape[2], x.shape[3], x.shape[4])  # validates the shape
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def normalize(self, z: Tensor) -> Tensor:
        """Raw latents -> roughly zero-mean, unit-variance latents (what the DiT sees)."""
        return (z - self.latent_mean.view(1, -1, 1, 1, 1)) / self.latent_std.view(1, -1, 1, 1, 1)

    def denormalize(self, z: Tensor) -> Tensor:
        """Inverse of ``normalize``."""
        return z * self.latent_std.view(1, -1, 1, 1, 1) + self.latent_mean.view(1, -1, 1, 1, 1)

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Tensor:
        """(B, C, T, H, W) pixels -> (B, c, t, h, w) normalised latents (mean, or a sample)."""
        mean, logvar = self.encode_moments(x)
        z = mean
        if sample:
            noise = torch.randn(
                mean.shape, generator=generator, dtype=mean.dtype, device=mean.device
            )
            z = mean + torch.exp(0.5 * logvar) * noise
        return self.normalize(z)

    def decode(self, z: Tensor) -> Tensor:
        """(B, c, t, h, w) normalised latents -> (B, C, T, H, W) pixels (unclamped)."""
        return self.decoder(self.denormalize(z))

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass: returns (reconstruction, posterior mean, posterior logvar), raw space.

        ``noise`` (B, c, t, h, w) is the posterior sample's standard normal noise, drawn from
        ``generator`` when not given (a data-parallel trainer passes its rows of the global
        batch's noise, so the ranks together draw what one process would).
        """
        mean, logvar = self.encode_moments(x)
        if noise is None:
            noise = torch.randn(
                mean.shape, generator=generator, dtype=mean.dtype, device=mean.device
            )
        z = mean + torch.exp(0.5 * logvar) * noise.to(mean.dtype)
        return self.decoder(z), mean, logvar

    @torch.no_grad()
    def calibrate(self, means: Tensor) -> None:
        """Set the latent statistics from raw posterior means (N, c, t, h, w) of real clips."""
        self.latent_mean.copy_(means.mean(dim=(0, 2, 3, 4)))
        self.latent_std.copy_(means.std(dim=(0, 2, 3, 4)).clamp_min(1e-4))

    @torch.no_grad()
    def load_widened(self, weights: dict[str, Tensor]) -> None:
        """Load the weights of a VAE with fewer latent channels (otherwise the same): its latent
        channels keep their roles, the new ones start silent (the decoder's weights from them
        are zero; the encoder's means small), so training starts from the smaller VAE's output."""
        c = self.cfg.latent_channels
        old = weights["latent_mean"].numel()
        if old >= c:
            raise ValueError(f"widening needs fewer latent channels than {c}, the weights have {old}")  # fmt: skip
        own = self.state_dict()
        out_w, out_b = "encoder.conv_out.conv.weight", "encoder.conv_out.conv.bias"
        for k, v in weights.items():
            if own[k].shape == v.shape:
                own[k].copy_(v)
            elif k in (out_w, out_b):  # [means, log-variances]: each keeps its place
                own[k][:old] = v[:old]
                own[k][c : c + old] = v[old:]
                own[k][old:c] *= 0.1
            elif k == "decoder.conv_in.conv.weight":
                own[k].zero_()
                own[k][:, :old] = v
            elif k in ("latent_mean", "latent_std"):
                own[k][:old] = v
            else:
                raise ValueError(f"{k}: shape {tuple(v.shape)} does not widen to {tuple(own[k].shape)}")  # fmt: skip
        self.load_state_dict(own)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over all elements."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
