"""Rectified flow as pure functions (Liu et al. 2022; the SD3 formulation, Esser et al. 2024).

Convention: ``timestep`` s in [0, 1]; s = 0 is data, s = 1 is pure noise, and the path between
them is straight:

    x_s = (1 - s) * x0 + s * noise,        velocity  v = dx_s/ds = noise - x0.

The model is trained to predict v; sampling integrates dx/ds = v from s = 1 down to s = 0.
Nothing here holds state: a sampler is a function of a model function and a schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# A model function: (x_s (B, c, t, h, w), timestep (B,)) -> velocity (B, c, t, h, w).
VelocityFn = Callable[[Tensor, Tensor], Tensor]


def shift_timesteps(s: Tensor, shift: float) -> Tensor:
    """SD3's time shift: s -> shift*s / (1 + (shift-1)*s). shift > 1 moves mass toward noise.

    Endpoints are fixed (0 -> 0, 1 -> 1). More tokens carry more redundant signal, so the same
    noise level destroys less information; shifting toward noise compensates (SD3, section 5.3.2).
    """
    return shift * s / (1 + (shift - 1) * s)


def resolution_shift(base_shift: float, num_tokens: int, base_tokens: int) -> float:
    """Scale a shift tuned at ``base_tokens`` to ``num_tokens`` (sqrt of the token ratio)."""
    return base_shift * math.sqrt(num_tokens / base_tokens)


def sample_timesteps(
    batch: int,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """(B,) training timesteps: logit-normal (SD3), then shifted toward noise by ``shift``.

    The shift at *training* time is what matters on the shapes world: high noise is where an
    object's position and motion are decided, and logit-normal alone rarely visits it.
    """
    u = torch.randn(batch, generator=generator, device=device) * std + mean
    return shift_timesteps(torch.sigmoid(u), shift)


def add_noise(x0: Tensor, noise: Tensor, timestep: Tensor) -> Tensor:
    """x_s = (1 - s) x0 + s noise; s is (B,), or (B, t) per frame of (B, c, t, h, w) latents."""
    if timestep.dim() == 2:
        s = timestep[:, None, :, None, None].to(x0.dtype)
    else:
        s = timestep.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def sample_condition_frames(
    batch: int, frames: int, prob: float, generator: torch.Generator | None = None
) -> Tensor:
    """(B,) number of leading latent frames given clean (frame masks, Open-Sora 1.1 style).

    With probability ``prob`` a clip is conditioned: half of those on the first frame only
    (image-to-video), the rest on 2 .. frames-1 frames (extension); otherwise 0 (text only).
    """
    u = torch.rand(batch, generator=generator)
    if frames < 2:  # a single frame given clean would leave nothing to generate
        return torch.zeros(batch, dtype=torch.long)
    if frames >= 3:
        longer = torch.randint(2, frames, (batch,), generator=generator)
    else:
        longer = torch.ones(batch, dtype=torch.long)
    k = torch.where(u < prob / 2, torch.ones_like(longer), longer)
    return torch.where(u < prob, k, torch.zeros_like(k))


def frame_timesteps(timestep: Tensor, cond_frames: Tensor, frames: int) -> Tensor:
    """(B,) noise levels and (B,) clean-prefix lengths -> (B, frames) per-frame levels (0 on the
    given frames)."""
    given = torch.arange(frames, device=timestep.device)[None] < cond_frames[:, None]
    return torch.where(given, torch.zeros_like(timestep)[:, None], timestep[:, None])


def velocity_target(x0: Tensor, noise: Tensor) -> Tensor:
    """The straight path's velocity, noise - x0 (independent of s)."""
    return noise - x0


def object_weights(x0: Tensor, extra: float, threshold: float = 1.0) -> Tensor:
    """(B, C, T, H, W) latents -> (B, 1, T, H, W) loss weights, 1 + ``extra`` on object cells.

    A cell is an object cell when its latent is more than ``threshold`` (RMS over channels) from
    the clip's per-channel median, which is the background's latent where a plain background
    covers most of the frame (small objects on black). Normalised to mean 1 over each frame's
    cells, so the loss keeps its scale and every frame its share."""
    background = x0.flatten(2).median(dim=2).values[..., None, None, None]
    distance = (x0 - background).pow(2).mean(dim=1, keepdim=True).sqrt()
    w = 1.0 + extra * (distance > threshold).to(x0.dtype)
    return w / w.mean(dim=(3, 4), keepdim=True)


def sample_schedule(steps: int, shift: float = 1.0) -> Tensor:
    """(steps + 1,) decreasing timesteps from 1 to 0, shifted toward noise."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_timesteps(torch.linspace(1.0, 0.0, steps + 1), shift)


def classifier_free_guidance(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) on every channel: u + scale * (c - u).

    Written as c + (scale - 1)(c - u), which is the same value but makes ``scale == 1`` return
    the conditional prediction bit for bit; at 0 it is the unconditional one.
    """
    return cond + (scale - 1.0) * (cond - uncond)


def guidance_active(s: float, interval: tuple[float, float] = (0.0, 1.0)) -> bool:
    """Whether guidance applies at noise level ``s``: ``lo < s <= hi``.

    Guidance only at high noise (e.g. (0.75, 1]) steers composition (colour, position, motion)
    where it is decided, and leaves the low-noise steps, which draw edges and corners, to the
    conditional model alone: strong guidance there over-sharpens and rounds shapes.
    """
    lo, hi = interval
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"guidance interval must satisfy 0 <= lo < hi <= 1, got {interval}")
    return lo < s <= hi


def stochastic_sample(
    velocity: VelocityFn,
    noise: Tensor,
    schedule: Tensor,
    eta: float,
    generators: list[torch.Generator] | None = None,
    keep: Tensor | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
) -> Tensor:
    """Integrate from schedule[0] to schedule[-1], renewing a share ``eta`` of the noise each step.

    A step from level s to s' < s splits x_s into the model's estimates of its data and noise,

        x0 = x - s v,        e = x + (1 - s) v,

    and lands on x' = (1 - s') x0 + s' (sqrt(1 - eta^2) e + eta z), with z fresh standard normal
    noise: DDIM's update (Song et al. 2021, eq. 12) with its noise scale set to eta * s'.
    ``eta = 0`` is the Euler step (computed as one, bit for bit); ``eta = 1`` keeps nothing of
    the noise estimate. The last step, to s' = 0, adds no noise.

    The fresh noise lets later steps correct an imperfect model's errors instead of integrating
    them (the stochasticity of Karras et al. 2022, section 4). Its price is a bias: the share does
    not shrink with the step size, so even an exact model is sampled somewhat too narrowly.

    ``generators``: one per batch row, so row i's fresh noise does not depend on the other rows.
    ``keep``: a boolean mask broadcastable to x of elements that never move (clean frames).
    ``callback(i, x0)``: called at step i with its data estimate x0 = x - s v (a progress bar, a
    preview of the denoising); an exception it raises stops the sampling.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if generators is not None and len(generators) != noise.shape[0]:
        raise ValueError(f"{len(generators)} generators for a batch of {noise.shape[0]}")
    x = noise
    for i in range(len(schedule) - 1):
        s, s_next = schedule[i], schedule[i + 1]
        v = velocity(x, s.expand(x.shape[0]).to(x.device))
        if callback is not None:
            callback(i, x - s * v)
        if eta == 0.0 or float(s_next) == 0.0:
            x_next = x + (s_next - s).to(x.dtype) * v
        else:
            if generators is None:
                z = torch.randn(x.shape, dtype=x.dtype)
            else:
                z = torch.stack([torch.randn(x.shape[1:], generator=g) for g in generators])
            x0, e = x - s * v, x + (1 - s) * v
            e = math.sqrt(1.0 - eta**2) * e + eta * z.to(x.device, x.dtype)
            x_next = (1 - s_next) * x0 + s_next * e
        x = x_next if keep is None else torch.where(keep, x, x_next)
    return x
