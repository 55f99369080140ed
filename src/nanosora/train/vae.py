"""`nanosora train vae`: the causal video VAE's objective, data and trainer (on train/loop.py).

Objective: L1 + L2 reconstruction + a small KL term. Two terms are for the shapes world, where
most pixels are black background, and are off unless a config sets them: ``loss.object_weight``
weights the object and its edges (a dilated mask of non-black pixels), which puts the capacity
where the probe looks; ``loss.colour`` matches each frame's mean object colour.

Resumption is exact: data order and noise are derived from (seed, step), and the optimizer, EMA
and step are restored, so a killed run that resumes follows the uninterrupted trajectory.

Data parallelism (``train.parallel``, train/distributed.py) as in the DiT loop: each rank loads
and computes its rows of every global batch, keeps its rows of the global batch's posterior
noise, and normalises the object weighting by the global batch's mean weight, so N processes
follow one process's loss trajectory. Rank 0 logs, writes GIFs, calibrates the latent
statistics (shared with the others by broadcast) and evaluates.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from nanosora.config import VAELossConfig, VAETrainConfig
from nanosora.data.datasets import TrainingClips, load_batch, tensor_to_frames, training_clips
from nanosora.models.vae import VideoVAE, kl_divergence
from nanosora.precision import bf16_autocast
from nanosora.train.checkpoint import EMA, RunDir, init_weights, load_weights_into, plot_metrics
from nanosora.train.distributed import (
    Dist,
    broadcast,
    finish,
    full_tensor,
    log,
    mean_across,
    micro_batches,
    no_sync,
)
from nanosora.train.loop import (
    StepResult,
    Trainee,
    accumulate,
    batch_indices,
    part_means,
    prepare,
    run_progress,
    start_run,
    step_generator,
    train,
)
from nanosora.train.reconstruction import reconstruction_metrics
from nanosora.video.io import write_gif


def object_mask(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) clips in [-1, 1] -> (B, 1, T, H, W) 1.0 on non-black (object) pixels."""
    return (x.amax(dim=1, keepdim=True) > -0.85).float()


def object_weights(x: torch.Tensor, extra: float) -> torch.Tensor:
    """(B, C, T, H, W) clips -> (B, 1, T, H, W) weights: 1 + extra on non-black pixels and edges."""
    mask = F.max_pool3d(
        object_mask(x), kernel_size=(1, 5, 5), stride=1, padding=(0, 2, 2)
    )  # dilate 2 px
    return 1.0 + extra * mask


def object_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) clips -> (B, 1, T) 1.0 where a frame holds object (non-background) pixels."""
    return object_mask(x).flatten(3).amax(dim=3)


def object_colour_error(
    rec: torch.Tensor, x: torch.Tensor, frames_mean: float | None = None
) -> torch.Tensor:
    """L1 distance between the mean RGB of each frame's object pixels in ``rec`` and ``x``.

    Object pixels are the non-background ones of ``x``; frames without any contribute nothing.
    A pixel loss shrinks luminance error first and leaves colours dull and mixed across channels
    for hundreds of steps; this term measures exactly that and has no other minimum than the
    right colour. ``frames_mean``: the share of frames with an object over the whole global batch
    when ``x`` is a share of it (as ``weight_mean`` in ``vae_loss``); None: ``x``'s own.
    """
    mask = object_mask(x)  # (B, 1, T, H, W)
    area = mask.sum(dim=(3, 4))  # (B, 1, T)
    mean_rec = (rec.float() * mask).sum(dim=(3, 4)) / area.clamp(min=1)
    mean_x = (x * mask).sum(dim=(3, 4)) / area.clamp(min=1)
    present = (area > 0).float()
    share = present.mean() if frames_mean is None else frames_mean
    if float(share) == 0:
        return rec.sum() * 0.0  # no object anywhere in the batch: nothing to match
    return ((mean_rec - mean_x).abs() * present).mean() / share


def gradient_error(
    rec: torch.Tensor, x: torch.Tensor, w: torch.Tensor, norm: torch.Tensor | float
) -> torch.Tensor:
    """Weighted L1 error of neighbouring-pixel differences along W and H (the gradient-difference
    loss): a blur that keeps each pixel's mean error small still pays at every edge and corner.
    ``w``: the pixel weights of ``vae_loss``, ``norm`` their mean (each difference takes the
    weight of its second pixel)."""
    err = rec.float() - x  # differences of the error = error of the differences
    per_dim = [(w.narrow(d, 1, w.shape[d] - 1) * err.diff(dim=d).abs()).mean() for d in (-1, -2)]
    return sum(per_dim) / norm


def vae_loss(
    rec: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    cfg: VAELossConfig,
    weight_mean: float | None = None,
    frames_mean: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted reconstruction + KL; returns the loss and its parts for logging.

    ``weight_mean``: the object weights' mean over the whole global batch when ``x`` is a share
    of it (a rank's rows, a micro-batch), so the shares' losses average to the batch's loss;
    None: ``x``'s own. ``frames_mean``: the same for the colour term (``object_colour_error``).
    """
    w = object_weights(x, cfg.object_weight)
    norm = w.mean() if weight_mean is None else weight_mean
    err = rec.float() - x
    l1 = (w * err.abs()).mean() / norm
    l2 = (w * err.pow(2)).mean() / norm
    kl = kl_divergence(mean.float(), logvar.float())
    loss = cfg.l1 * l1 + cfg.l2 * l2 + cfg.kl * kl
    parts = {"l1": l1.item(), "l2": l2.item(), "kl": kl.item()}
    if cfg.gradient:
        grad = gradient_error(rec, x, w, norm)
        loss = loss + cfg.gradient * grad
        parts["gradient"] = grad.item()
    if cfg.colour:
        colour = object_colour_error(rec, x, frames_mean)
        loss = loss + cfg.colour * colour
        parts["colour"] = colour.item()
    return loss, parts


@torch.no_grad()
def write_recon_gif(vae: VideoVAE, clips: Dataset, path: Path, fps: float, n: int = 4) -> None:
    """GIF with one row per clip: original | reconstruction."""
    x = torch.stack([clips[i]["video"] for i in range(min(n, len(clips)))])
    rec = vae.decode(vae.encode(x)).clamp(-1, 1)
    rows = [
        np.concatenate([tensor_to_frames(a), tensor_to_frames(b)], axis=2) for a, b in zip(x, rec)
    ]
    write_gif(path, np.concatenate(rows, axis=1), fps=fps)


@torch.no_grad()
def calibrate(vae: VideoVAE, clips: Dataset, max_clips: int = 512, batch_size: int = 16) -> None:
    """Set the VAE's latent normalisation from posterior means of real clips."""
    means = []
    for lo in range(0, min(max_clips, len(clips)), batch_size):
        x = torch.stack([clips[i]["video"] for i in range(lo, min(len(clips), lo + batch_size))])
        means.append(vae.encode_moments(x)[0])
    vae.calibrate(torch.cat(means))


def plain_copy(vae: VideoVAE, weights: dict[str, torch.Tensor], dp: Dist) -> VideoVAE | None:
    """A single-device CPU VAE holding ``weights`` on rank 0; None on the other ranks.

    Every rank calls it: gathering FSDP shards (``full_tensor``) is a collective.
    """
    full = {k: full_tensor(v).detach().cpu() for k, v in weights.items()}
    if not dp.is_main:
        return None
    copy = VideoVAE(vae.cfg)
    copy.load_state_dict(full)
    return copy.eval()


def final_weights(
    vae: VideoVAE, ema: EMA | None, clips: Dataset, cfg: VAETrainConfig, dp: Dist
) -> VideoVAE | None:
    """The EMA weights with calibrated latent statistics, as a plain VAE on rank 0 (else None).

    Rank 0 calibrates once; the statistics are broadcast and written into ``vae`` and ``ema`` on
    every rank, so the checkpoint saved next holds them. A frozen encoder keeps the statistics
    the DiT was trained with.
    """
    final = plain_copy(vae, ema.state_dict() if ema else vae.state_dict(), dp)
    stats = torch.stack([vae.latent_mean, vae.latent_std]).cpu()
    if final is not None and cfg.train_encoder:
        calibrate(final, clips)
        stats = torch.stack([final.latent_mean, final.latent_std])
    stats = broadcast(stats, dp)
    vae.latent_mean.copy_(stats[0])
    vae.latent_std.copy_(stats[1])
    if ema is not None:
        ema.shadow["latent_mean"].copy_(stats[0])
        ema.shadow["latent_std"].copy_(stats[1])
    return final


def main(cfg: VAETrainConfig, resume: bool = False) -> Path:
    """Train a VAE; returns the run directory (weights with calibrated latent statistics)."""
    # 1. Processes, run directory, threads, data.
    dp, run = start_run(cfg, cfg.train, resume)
    if not cfg.data.manifest:
        raise ValueError("data.manifest is empty: give the training clips' manifest")
    data = training_clips(  # one shape, or bucketed batches that split evenly over the ranks
        cfg.data,
        cfg.train,
        cfg.val_manifest,
        multiple_of=dp.world_size * cfg.train.grad_accum,
        eval_frames=cfg.eval_frames,
    )
    # 2. Model, optimizer, EMA; restore on resume.
    torch.manual_seed(cfg.train.seed)
    vae = VideoVAE(cfg.vae)
    if cfg.init_from and not (resume and run.exists()):
        if cfg.widen_latent:
            vae.load_widened(init_weights(cfg.init_from, "vae"))
        else:
            load_weights_into(vae, cfg.init_from, "vae", "vae")
    if not cfg.train_encoder:
        if not cfg.init_from:
            raise ValueError(
                "train_encoder=false needs init_from: a frozen random encoder is useless"
            )
        for p in vae.encoder_parameters():
            p.requires_grad_(False)
    stages = [*vae.encoder.body, *vae.decoder.body]  # units of FSDP sharding / recomputation
    w, state = prepare(vae, cfg.optim, cfg.train, dp, run, resume, blocks=stages)
    n_params = sum(p.numel() for p in vae.parameters())
    log(dp, f"VAE {n_params / 1e6:.2f}M params, {len(data.clips)} clips, {dp.world_size} rank(s)")
    # 3. Loop.
    done = train(
        w, run, state, cfg.train, cfg.optim, dp,
        gradients=functools.partial(step_gradients, vae, w, data, cfg, state, dp),
        log_fields=functools.partial(log_fields, d=dp),
        name="vae",
        plots=("loss", "psnr", "kl"),
        hooks=((cfg.train.sample_every,
                functools.partial(write_samples, vae, data, run, cfg, dp)),),
    )  # fmt: skip
    if not done:  # paused at train.stop_at: no final weights until the run ends
        finish(dp)
        return run.path
    # 4. Final: EMA weights with calibrated latent statistics, saved; then (rank 0) metrics, plots.
    final = final_weights(vae, w.ema, data.view, cfg, dp)
    run.save(vae, w.ema, w.opt, state)
    finish(dp)
    if final is None:  # not rank 0
        return run.path
    metrics = reconstruction_metrics(final, data.val)
    summary = {k: v for k, v in metrics.items() if k != "per_clip"}
    (run.path / "eval.json").write_text(json.dumps(metrics, indent=2))
    run.log(
        {
            "step": state["step"],
            "final": True,
            **{f"val_{k}": v for k, v in summary.items() if isinstance(v, float)},
        }
    )
    write_recon_gif(final, data.val, run.path / "samples" / "final.gif", cfg.data.fps)
    plot_metrics(run, ("loss", "l1", "kl"))
    print(
        f"VAE {run.path}: PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f}, probe {summary['probe']}"
    )
    return run.path


def colour_schedule(cfg: VAETrainConfig, step: int, state: dict) -> VAETrainConfig:
    """``cfg`` with this step's colour weight: constant, or with ``loss.colour_decay`` falling
    linearly to 0 as the run's steps or wall-clock budget run out."""
    if not (cfg.loss.colour and cfg.loss.colour_decay):
        return cfg
    loss = dataclasses.replace(
        cfg.loss, colour=cfg.loss.colour * (1.0 - run_progress(step, state, cfg.train))
    )
    return dataclasses.replace(cfg, loss=loss)


def micro_batch_loss(
    forward: torch.nn.Module,
    x: torch.Tensor,
    noise: torch.Tensor,
    weight_mean: float,
    frames_mean: float | None,
    cfg: VAETrainConfig,
    d: Dist,
    logged: list[dict[str, float]],
    rows: slice,
) -> torch.Tensor:
    """Loss of ``rows`` of clips ``x`` (B, C, T, H, W) with posterior ``noise`` (B, c, t, h, w),
    on this rank's device; its parts and the reconstruction's MSE (for PSNR) go to ``logged``."""
    x, noise = x[rows].to(d.device), noise[rows].to(d.device)
    with bf16_autocast(d.device.type, cfg.train.bf16):
        rec, mean, logvar = forward(x, noise=noise)
    loss, parts = vae_loss(rec, x, mean, logvar, cfg.loss, weight_mean, frames_mean)
    mse = (rec.detach().float().clamp(-1, 1) - x).pow(2).mean().item()
    logged.append({**parts, "mse": mse})
    return loss


def step_gradients(
    vae: VideoVAE,
    w: Trainee,
    data: TrainingClips,
    cfg: VAETrainConfig,
    state: dict,
    d: Dist,
    step: int,
) -> StepResult:
    """The gradients of optimizer step ``step`` on this rank's rows of its batch, less the last
    micro-batch's backward (``accumulate``)."""
    t = cfg.train
    indices = (  # a bucket's batch (one shape, token budget), or batch_size clips
        data.batches.batch_at(step)
        if data.batches is not None
        else batch_indices(len(data.clips), t.batch_size, step, t.seed)
    )
    parts = micro_batches(len(indices), d, t.grad_accum)  # this rank's rows of the batch
    mine = slice(parts[0].start, parts[-1].stop)
    x = load_batch(data.clips, indices[mine], step)  # only this rank's clips
    # Crop offsets and the posterior noise of the whole batch, drawn as one process draws them;
    # our rows kept.
    gen = step_generator(t.seed, step)
    if cfg.crop:
        x = random_crops(x, cfg.crop, len(indices), mine, gen, cfg.crop_content)
    noise = torch.randn((len(indices), *vae.latent_shape(*x.shape[2:])), generator=gen)[mine]
    weight_mean = mean_across(object_weights(x, cfg.loss.object_weight).mean().item(), d)
    frames_mean = mean_across(object_frames(x).mean().item(), d) if cfg.loss.colour else None
    step_cfg = colour_schedule(cfg, step, state)
    logged: list[dict[str, float]] = []
    last, value = accumulate(
        functools.partial(
            micro_batch_loss, w.forward, x, noise, weight_mean, frames_mean, step_cfg, d, logged
        ),
        [slice(p.start - mine.start, p.stop - mine.start) for p in parts],
        w.opt,
        lambda: no_sync(w.wrapped, d),
    )
    return StepResult(last, value, logged, f"VAE ({logged[-1]})")


def random_crops(
    x: torch.Tensor,
    size: int,
    batch: int,
    mine: slice,
    gen: torch.Generator,
    content: bool = False,
) -> torch.Tensor:
    """A ``size`` x ``size`` crop of each clip of ``x`` (B, C, T, H, W), rows ``mine`` of a batch
    of ``batch`` clips whose random draws are made together from ``gen``.

    ``content``: positions are drawn in proportion to the fourth power of ``crop_content_mass``
    (which favours crops holding nearly all of it) plus a floor of 5% of the mean, so plain crops
    stay possible, by inverse CDF of one uniform per clip; otherwise uniformly."""
    h, w = x.shape[3:]
    if size > min(h, w):
        raise ValueError(f"crop={size} is larger than the {h}x{w} training frames")
    if content:
        u = torch.rand(batch, generator=gen)[mine]
        mass = crop_content_mass(x, size).flatten(1) ** 4  # (B, positions)
        p = mass + 0.05 * mass.mean(dim=1, keepdim=True) + 1e-12  # a plain clip: uniform
        cdf = torch.cumsum(p / p.sum(dim=1, keepdim=True), dim=1)
        pos = torch.searchsorted(cdf, u[:, None]).squeeze(1).clamp(max=cdf.shape[1] - 1)
        top, left = pos // (w - size + 1), pos % (w - size + 1)
    else:
        top = torch.randint(h - size + 1, (batch,), generator=gen)[mine]
        left = torch.randint(w - size + 1, (batch,), generator=gen)[mine]
    return torch.stack(
        [c[..., i : i + size, j : j + size] for c, i, j in zip(x, top.tolist(), left.tolist())]
    )


def crop_content_mass(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, H - size + 1, W - size + 1): for every crop position, the summed
    distance of its pixels from their frame's per-channel median (max over channels, mean over
    frames): how much of the clip's content a crop there holds."""
    median = x.flatten(3).median(dim=3).values[..., None, None]
    saliency = (x - median).abs().amax(dim=1).mean(dim=1)  # (B, H, W)
    return F.avg_pool2d(saliency[:, None], size, stride=1)[:, 0] * size * size


def log_fields(result: StepResult, losses: list[float], d: Dist) -> dict[str, float]:
    """The step's loss, its terms (means over micro-batches and ranks) and reconstruction PSNR."""
    means = part_means(result, d)
    psnr = float(-10 * np.log10(means.pop("mse") / 4))
    return {"loss": losses[-1], **means, "psnr": psnr}


def write_samples(
    vae: VideoVAE, data: TrainingClips, run: RunDir, cfg: VAETrainConfig, d: Dist, step: int
) -> None:
    """Reconstruction GIF of the current (raw) weights; every rank calls it (FSDP gathers)."""
    sampler = plain_copy(vae, vae.state_dict(), d)
    if sampler is not None:
        gif = run.path / "samples" / f"step{step:06d}.gif"
        write_recon_gif(sampler, data.view, gif, cfg.data.fps)
