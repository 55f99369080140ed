"""What the VAE and DiT loops share: data order, per-step noise, lr, the NaN guard, the update.

Both loops derive everything random from (seed, step), so a resumed run follows the
uninterrupted trajectory exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager

import torch

from nanosora.config import OptimConfig, TrainConfig
from nanosora.train.checkpoint import EMA, NonFiniteLossError, RunDir, lr_at


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the clips in batch ``step``: epoch-wise permutations derived from the seed."""
    if n < batch_size:
        raise ValueError(f"{n} clips cannot fill a batch of {batch_size}")
    per_epoch = n // batch_size
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[i * batch_size : (i + 1) * batch_size].tolist()


def step_generator(seed: int, step: int) -> torch.Generator:
    """A fresh generator per step, so noise does not depend on where a run was resumed."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step + 1)


def time_fraction(state: dict, t: TrainConfig) -> float:
    """Share of the wall-clock budget used (0 without one): the lr decays by steps or time."""
    return state["elapsed"] / (60 * t.minutes) if t.minutes else 0.0


def run_progress(step: int, state: dict, t: TrainConfig) -> float:
    """Share of the run done, in [0, 1]: by steps or by the wall-clock budget, whichever is
    further along."""
    return min(1.0, max(step / t.steps, time_fraction(state, t)))


def setup_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)


def set_lr(
    opt: torch.optim.Optimizer, step: int, o: OptimConfig, t: TrainConfig, state: dict
) -> None:
    """Warmup + cosine, by steps or by the wall-clock budget, whichever ends first."""
    lr = lr_at(step, o.lr, o.warmup_steps, t.steps, o.min_lr_ratio, time_fraction(state, t))
    for g in opt.param_groups:
        g["lr"] = lr


def check_finite(
    loss: torch.Tensor,
    what: str,
    run: RunDir,
    model: torch.nn.Module,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    state: dict,
) -> None:
    """Stop on a NaN/inf loss, after saving the (still good) pre-update state for --resume."""
    if torch.isfinite(loss):
        return
    step = state["step"]
    run.save(model, ema, opt, state)
    raise NonFiniteLossError(
        f"{what} loss is {loss.item()} at step {step}; the checkpoint at step {step} (before this "
        f"update) is in {run.path}. Lower optim.lr or set train.bf16=false, then rerun with --resume."
    )


def build_adamw(params: Iterable[torch.nn.Parameter], o: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters: fused (one kernel for all tensors) where this build
    and device have it, else the multi-tensor (foreach) implementation."""
    params = [p for p in params if p.requires_grad]
    kw = {"lr": o.lr, "betas": o.betas, "weight_decay": o.weight_decay}
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, ValueError):  # e.g. a device without fused kernels
        return torch.optim.AdamW(params, **kw)


def optimizer_step(
    loss: torch.Tensor,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    ema: EMA | None,
    grad_clip: float,
    step: int,
    accumulated: bool = False,
) -> float:
    """Backward, clip, AdamW step, EMA update; returns the gradient norm before clipping.

    ``accumulated``: earlier micro-batches' gradients are already in ``.grad`` (see
    ``accumulate``); ``loss`` is the last micro-batch's and is added on top.
    """
    if not accumulated:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or float("inf"))
    if hasattr(gnorm, "full_tensor"):  # FSDP: a norm over shards, reduced across ranks
        gnorm = gnorm.full_tensor()
    opt.step()
    if ema is not None:
        ema.update(model, step)
    return float(gnorm)


def accumulate(
    loss_of: Callable[[slice], torch.Tensor],
    parts: list[slice],
    opt: torch.optim.Optimizer,
    no_sync: Callable[[], AbstractContextManager],
) -> tuple[torch.Tensor, float]:
    """Gradient accumulation: backward every micro-batch but the last (without gradient sync).

    Each micro-batch's loss is divided by their number, so the summed gradient is the mean over
    the whole batch. Returns the last micro-batch's scaled loss (for ``optimizer_step(...,
    accumulated=True)``) and the mean loss over all micro-batches of this process.
    """
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for rows in parts[:-1]:
        with no_sync():
            loss = loss_of(rows) / len(parts)
            loss.backward()
        total += loss.item()
    last = loss_of(parts[-1]) / len(parts)
    return last, total + last.item()
