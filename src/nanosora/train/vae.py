"""`nanosora train vae`: the causal video VAE's training loop.

Objective: object-weighted L1 + L2 reconstruction + a small KL term. On the shapes world most
pixels are black background; weighting the object and its edges (a dilated mask of non-black
pixels) put the capacity where the probe looks and added 2-3 dB in the prototype.

Resumption is exact: data order and noise are derived from (seed, step), and the optimizer, EMA
and step are restored, so a killed run that resumes follows the uninterrupted trajectory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from nanosora.config import VAELossConfig, VAETrainConfig
from nanosora.data.datasets import tensor_to_frames
from nanosora.data.video_dataset import TrainingClips, load_batch, training_clips
from nanosora.models.vae import VideoVAE, kl_divergence
from nanosora.train.checkpoint import EMA, RunDir, load_weights_into, plot_metrics
from nanosora.train.loop import (
    batch_indices,
    check_finite,
    optimizer_step,
    set_lr,
    setup_threads,
    step_generator,
)
from nanosora.video.io import write_gif


def object_weights(x: torch.Tensor, extra: float) -> torch.Tensor:
    """(B, C, T, H, W) clips -> (B, 1, T, H, W) weights: 1 + extra on non-black pixels and edges."""
    mask = (x.amax(dim=1, keepdim=True) > -0.85).float()
    mask = F.max_pool3d(mask, kernel_size=(1, 5, 5), stride=1, padding=(0, 2, 2))  # dilate 2 px
    return 1.0 + extra * mask


def vae_loss(
    rec: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, cfg: VAELossConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted reconstruction + KL; returns the loss and its parts for logging."""
    w = object_weights(x, cfg.object_weight)
    err = rec.float() - x
    l1 = (w * err.abs()).mean() / w.mean()
    l2 = (w * err.pow(2)).mean() / w.mean()
    kl = kl_divergence(mean.float(), logvar.float())
    loss = cfg.l1 * l1 + cfg.l2 * l2 + cfg.kl * kl
    return loss, {"l1": l1.item(), "l2": l2.item(), "kl": kl.item()}


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


def main(cfg: VAETrainConfig, resume: bool = False) -> Path:
    """Train a VAE; returns the run directory (weights with calibrated latent statistics)."""
    # 1. Run directory, threads, data.
    setup_threads(cfg.train.threads)
    run = RunDir(cfg.train.out_dir)
    run.start(cfg, resume)
    d = cfg.data
    if not d.manifest:
        raise ValueError("data.manifest is empty: give the training clips' manifest")
    data = training_clips(d, cfg.train, cfg.val_manifest)  # one shape, or bucketed batches
    val = data.val
    # 2. Model, optimizer, EMA; restore on resume.
    torch.manual_seed(cfg.train.seed)
    vae = VideoVAE(cfg.vae)
    if cfg.init_from and not (resume and run.exists()):
        load_weights_into(vae, cfg.init_from, "vae", "vae")
    if not cfg.train_encoder:
        if not cfg.init_from:
            raise ValueError(
                "train_encoder=false needs init_from: a frozen random encoder is useless"
            )
        for p in vae.encoder_parameters():
            p.requires_grad_(False)
    o = cfg.optim
    trainable = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    ema = EMA(vae, cfg.train.ema_decay) if cfg.train.ema_decay > 0 else None
    state = {"step": 0, "elapsed": 0.0}
    if resume and run.exists():
        state = run.load(vae, ema, opt)
        run.truncate_metrics(state["step"])
    # 3. Loop.
    train_loop(vae, opt, ema, data, cfg, run, state)
    # 4. Final: EMA weights, latent calibration, metrics, plots.
    final = VideoVAE(cfg.vae)
    final.load_state_dict(ema.state_dict() if ema else vae.state_dict())
    final.eval()
    if cfg.train_encoder:  # a frozen encoder keeps the statistics the DiT was trained with
        calibrate(final, data.view)
    if ema is not None:
        ema.load_state_dict(final.state_dict())
    vae.latent_mean.copy_(final.latent_mean)
    vae.latent_std.copy_(final.latent_std)
    run.save(vae, ema, opt, state)
    from nanosora.evaluate.reconstruction import reconstruction_metrics

    metrics = reconstruction_metrics(final, val)
    summary = {k: v for k, v in metrics.items() if k != "per_clip"}
    (run.path / "eval.json").write_text(json.dumps(metrics, indent=2))
    run.log(
        {
            "step": state["step"],
            "final": True,
            **{f"val_{k}": v for k, v in summary.items() if isinstance(v, float)},
        }
    )
    write_recon_gif(final, val, run.path / "samples" / "final.gif", d.fps)
    plot_metrics(run, ("loss", "l1", "kl"))
    print(
        f"VAE {run.path}: PSNR {summary['psnr']:.2f} dB, SSIM {summary['ssim']:.4f}, probe {summary['probe']}"
    )
    return run.path


def train_loop(
    vae: VideoVAE,
    opt: torch.optim.Optimizer,
    ema: EMA | None,
    data: TrainingClips,
    cfg: VAETrainConfig,
    run: RunDir,
    state: dict,
) -> None:
    """Optimise until train.steps or train.minutes; checkpoints and samples along the way."""
    t, o = cfg.train, cfg.optim
    use_bf16 = t.bf16
    start_time, start_elapsed = time.time(), state["elapsed"]
    bar = tqdm(total=t.steps, initial=state["step"], desc="vae", unit="step")
    vae.train()
    forward = torch.compile(vae) if t.compile else vae
    while state["step"] < t.steps:
        step = state["step"]
        if t.minutes and start_elapsed + time.time() - start_time > 60 * t.minutes:
            break
        set_lr(opt, step, o, t, state)
        indices = (  # a bucket's batch (one shape, token budget), or batch_size clips
            data.batches.batch_at(step)
            if data.batches is not None
            else batch_indices(len(data.clips), t.batch_size, step, t.seed)
        )
        x = load_batch(data.clips, indices, step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            rec, mean, logvar = forward(x, generator=step_generator(t.seed, step))
        loss, parts = vae_loss(rec, x, mean, logvar, cfg.loss)
        state["elapsed"] = start_elapsed + time.time() - start_time
        check_finite(loss, f"VAE ({parts})", run, vae, ema, opt, state)
        gnorm = optimizer_step(loss, vae, opt, ema, o.grad_clip, step)
        state["step"] = step + 1
        state["elapsed"] = start_elapsed + time.time() - start_time
        bar.update(1)
        if state["step"] % t.log_every == 0 or state["step"] == t.steps:
            rec_psnr = float(
                -10 * torch.log10((rec.detach().float().clamp(-1, 1) - x).pow(2).mean() / 4)
            )
            run.log(
                {
                    "step": state["step"],
                    "loss": loss.item(),
                    **parts,
                    "psnr": rec_psnr,
                    "grad_norm": gnorm,
                    "lr": opt.param_groups[0]["lr"],
                    "elapsed": state["elapsed"],
                }
            )
            bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{rec_psnr:.1f}")
        if state["step"] % t.ckpt_every == 0:
            run.save(vae, ema, opt, state)
            plot_metrics(run, ("loss", "psnr", "kl"))
        if t.sample_every and state["step"] % t.sample_every == 0:
            vae.eval()
            write_recon_gif(
                vae, data.view, run.path / "samples" / f"step{state['step']:06d}.gif", cfg.data.fps
            )
            vae.train()
    bar.close()
    run.save(vae, ema, opt, state)


def load_vae(run_dir: str | Path) -> VideoVAE:
    """Load a trained VAE (EMA weights, latent statistics included) from a run or pipeline dir."""
    import yaml

    from nanosora.config import VAEConfig, from_dict

    d = Path(run_dir)
    if not (d / "config.yaml").is_file():
        raise FileNotFoundError(f"{d} is not a VAE directory: config.yaml is missing")
    raw = yaml.safe_load((d / "config.yaml").read_text())
    vae_cfg = from_dict(VAEConfig, raw["vae"] if "vae" in raw else raw)
    from nanosora.train.checkpoint import load_weights

    vae = VideoVAE(vae_cfg)
    vae.load_state_dict(load_weights(d))
    return vae.eval()
