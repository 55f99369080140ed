"""The training loop both trainers run, and what they share: run setup and resumption, data
order, per-step noise, the lr schedule, the NaN guard, the update, logging, checkpoints, samples
and the progress display.

A trainer (train/vae.py, train/dit.py) builds its model and data, then hands ``train`` one
function that computes the gradients of optimizer step k, one that says what to log, and one that
writes samples. Everything random derives from (seed, step), so a resumed run follows the
uninterrupted trajectory exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm import tqdm

from nanosora.config import OptimConfig, TrainConfig
from nanosora.train.checkpoint import EMA, NonFiniteLossError, RunDir, lr_at, plot_metrics
from nanosora.train.distributed import (
    Dist,
    any_rank,
    init_distributed,
    log,
    mean_across,
    open_run,
    wrap_model,
)

# Minimum seconds between the loss plots written at checkpoints; the trainers plot once more at
# the end of a run.
PLOT_SECONDS = 60.0


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Indices of the clips in batch ``step``: epoch-wise permutations derived from the seed."""
    if n < batch_size:
        raise ValueError(f"{n} clips cannot fill a batch of {batch_size}")
    per_epoch = n // batch_size
    epoch, i = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    return perm[i * batch_size : (i + 1) * batch_size].tolist()


def weighted_batch_indices(
    weights: torch.Tensor, batch_size: int, step: int, seed: int
) -> list[int]:
    """Indices of the clips in batch ``step``, drawn in proportion to ``weights`` (without
    replacement inside a batch) from a generator of the seed and step alone, so a resumed run
    draws the batches it would have drawn."""
    usable = int((weights > 0).sum())
    if usable < batch_size:
        raise ValueError(f"{usable} clips of weight > 0 cannot fill a batch of {batch_size}")
    g = torch.Generator().manual_seed(seed * 100_003 + 50_021 + step)
    return torch.multinomial(weights, batch_size, replacement=False, generator=g).tolist()


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


def end_step(t: TrainConfig) -> int:
    """The step this invocation trains to: ``t.stop_at`` when it pauses earlier, else ``t.steps``."""
    return min(t.steps, t.stop_at) if t.stop_at else t.steps


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


def muon_matrices(model: nn.Module) -> list[str]:
    """Names of the trainable parameters Muon updates: the 2-D weights inside the transformer
    blocks (``blocks.N...``). The input and output layers, embeddings, norms and biases are not
    hidden matrices and stay with AdamW."""
    return [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and p.ndim == 2 and n.startswith("blocks.")
    ]


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the hidden matrices, AdamW on the rest, stepped together. ``param_groups`` lists
    both optimizers' groups, so the lr schedule sets one lr for all; Muon's update is scaled to
    AdamW's RMS (``adjust_lr_fn="match_rms_adamw"``), so the same lr suits both."""

    def __init__(self, model: nn.Module, o: OptimConfig) -> None:
        names = set(muon_matrices(model))
        if not names:
            raise ValueError(
                "optim.kind=muon: the model has no trainable 2-D weights in transformer blocks "
                "(blocks.N...); use optim.kind=adamw"
            )
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.muon = torch.optim.Muon(
            [p for n, p in named if n in names],
            lr=o.lr,
            weight_decay=o.weight_decay,
            momentum=o.muon_momentum,
            adjust_lr_fn="match_rms_adamw",
        )
        self.adamw = build_adamw([p for n, p in named if n not in names], o)
        # Optimizer.__init__ is not called: the two inner optimizers hold the state.
        self.defaults = {}
        self.state = {}

    @property
    def param_groups(self) -> list[dict]:  # type: ignore[override]
        return self.muon.param_groups + self.adamw.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> None:  # type: ignore[override]
        if closure is not None:
            raise ValueError("MuonAdamW.step takes no closure")
        self.muon.step()
        self.adamw.step()

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError(
                "this checkpoint's optimizer state is not Muon + AdamW (optim.kind=muon): resume "
                "it with the optim.kind it was trained with"
            )
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])


def build_optimizer(model: nn.Module, o: OptimConfig) -> torch.optim.Optimizer:
    """The optimizer ``optim.kind`` names, over the model's trainable parameters."""
    if o.kind == "muon":
        return MuonAdamW(model, o)
    return build_adamw(model.parameters(), o)


def optimizer_step(
    loss: torch.Tensor,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    ema: EMA | None,
    grad_clip: float,
    step: int,
    accumulated: bool = False,
) -> float:
    """Backward, clip, optimizer step, EMA update; returns the gradient norm before clipping.

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


class Trainee(NamedTuple):
    """The model being trained and its optimizer state."""

    model: nn.Module  # the plain module: weights, checkpoints, gradient clipping, EMA
    wrapped: nn.Module  # the module wrapped for data parallelism (train/distributed.py)
    forward: nn.Module  # what computes the loss: ``wrapped``, compiled with ``train.compile``
    opt: torch.optim.Optimizer
    ema: EMA | None


class StepResult(NamedTuple):
    """The gradients of one optimizer step, computed but for the last micro-batch's backward."""

    last: torch.Tensor  # the last micro-batch's scaled loss (see ``accumulate``)
    loss: float  # this process's loss over the whole step
    parts: list[dict[str, float]]  # per micro-batch loss terms, for the log (may be empty)
    label: str  # names the loss in the NaN error


def part_means(result: StepResult, d: Dist) -> dict[str, float]:
    """Each logged loss term of a step, averaged over its micro-batches and the ranks."""
    parts = result.parts
    return {
        k: mean_across(sum(m[k] for m in parts) / len(parts), d)
        for k in (parts[0] if parts else ())
    }


def start_run(cfg: Any, t: TrainConfig, resume: bool) -> tuple[Dist, RunDir]:
    """Threads, the process group and the run directory (``cfg`` written into it)."""
    setup_threads(t.threads)
    d = init_distributed(t)
    run = open_run(t.out_dir, d)
    run.start(cfg, resume)
    return d, run


def prepare(
    model: nn.Module,
    o: OptimConfig,
    t: TrainConfig,
    d: Dist,
    run: RunDir,
    resume: bool,
    blocks: list[nn.Module] | None = None,
) -> tuple[Trainee, dict]:
    """The model on its device, wrapped for data parallelism from outside (``blocks``: units of
    sharding and recomputation), its optimizer and EMA, restored from the run when resuming;
    and the loop state."""
    if o.kind == "muon" and t.parallel == "fsdp":
        raise ValueError(
            "optim.kind=muon needs whole matrices: use train.parallel=ddp (or none), not fsdp"
        )
    wrapped = wrap_model(model.to(d.device), d, t, blocks=blocks)
    # Compiling costs ~35 s on a CPU; worth it only for long runs, so it is a flag.
    forward = torch.compile(wrapped) if t.compile else wrapped
    opt = build_optimizer(model, o)
    ema = EMA(model, t.ema_decay) if t.ema_decay > 0 else None
    state = {"step": 0, "elapsed": 0.0}
    if resume and run.exists():
        state = run.load(model, ema, opt)
        run.truncate_metrics(state["step"])
    return Trainee(model, wrapped, forward, opt, ema), state


class Progress:
    """The run's progress bar: seconds of the wall-clock budget when there is one (with the step
    in the postfix), else steps."""

    def __init__(self, name: str, t: TrainConfig, state: dict, enabled: bool):
        self.by_time = t.minutes > 0
        self.budget = 60.0 * t.minutes
        if self.by_time:
            self.bar = tqdm(
                total=round(self.budget),
                initial=min(round(state["elapsed"]), round(self.budget)),
                desc=f"{name} (time budget)",
                unit="s",
                disable=not enabled,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                "[{elapsed}<{remaining}{postfix}]",
            )
        else:
            last = end_step(t)  # a pause ends the bar
            desc = f"{name} (to pause at {last} of {t.steps})" if last < t.steps else name
            self.bar = tqdm(
                total=last, initial=state["step"], desc=desc, unit="step", disable=not enabled
            )

    def update(self, state: dict) -> None:
        if self.by_time:
            self.bar.update(min(round(state["elapsed"]), round(self.budget)) - self.bar.n)
        else:
            self.bar.update(1)

    def show(self, state: dict, fields: dict[str, float]) -> None:
        shown = {k: f"{fields[k]:.4f}" if k == "loss" else f"{fields[k]:.1f}"
                 for k in ("loss", "psnr") if k in fields}  # fmt: skip
        self.bar.set_postfix({"step": state["step"], **shown} if self.by_time else shown)

    def close(self) -> None:
        self.bar.close()


def train(
    w: Trainee,
    run: RunDir,
    state: dict,
    t: TrainConfig,
    o: OptimConfig,
    d: Dist,
    gradients: Callable[[int], StepResult],
    log_fields: Callable[[StepResult, list[float]], dict[str, float]],
    name: str,
    plots: tuple[str, ...],
    hooks: tuple[tuple[int, Callable[[int], None]], ...] = (),
) -> bool:
    """Optimise until ``t.steps`` or the wall-clock budget ``t.minutes``, whichever comes first
    (or pause at ``t.stop_at``: the schedule is unchanged, so a resumed run is exact).

    Per step: the lr, ``gradients(step)``, the NaN guard, the update and EMA. Every
    ``t.log_every`` steps a metrics line with ``log_fields(result, losses since the last line)``
    (called on every rank: it may reduce across ranks); every ``t.ckpt_every`` a checkpoint and
    the ``plots`` of the metrics (at most once per ``PLOT_SECONDS``: a plot costs ~0.5 s); every
    ``n`` steps ``hook(step)`` for each ``(n, hook)`` of ``hooks`` with ``n`` > 0 (sample GIFs,
    snapshots; on every rank). All ranks run this loop; rank 0 logs and shows progress. Ends with
    a checkpoint; returns False when it paused at ``t.stop_at`` (the caller skips its final
    export), True when the run is done.
    """
    start_time, start_elapsed = time.time(), state["elapsed"]
    progress = Progress(name, t, state, d.is_main)
    losses: list[float] = []
    last_plot = start_time
    w.model.train()
    while state["step"] < end_step(t):
        step = state["step"]
        if t.minutes and any_rank(start_elapsed + time.time() - start_time > 60 * t.minutes, d):
            break
        set_lr(w.opt, step, o, t, state)
        result = gradients(step)
        loss = torch.tensor(mean_across(result.loss, d))  # the global batch's loss, every rank
        state["elapsed"] = start_elapsed + time.time() - start_time
        check_finite(loss, result.label, run, w.model, w.ema, w.opt, state)
        gnorm = optimizer_step(result.last, w.model, w.opt, w.ema, o.grad_clip, step, True)
        state["step"] = step + 1
        state["elapsed"] = start_elapsed + time.time() - start_time
        losses.append(loss.item())
        progress.update(state)
        if state["step"] % t.log_every == 0 or state["step"] == t.steps:
            fields = log_fields(result, losses)
            lr = w.opt.param_groups[0]["lr"]
            extra = {"grad_norm": gnorm, "lr": lr, "elapsed": state["elapsed"]}
            run.log({"step": state["step"], **fields, **extra})
            progress.show(state, fields)
            losses.clear()
        if state["step"] % t.ckpt_every == 0:
            run.save(w.model, w.ema, w.opt, state)
            if d.is_main and time.time() - last_plot >= PLOT_SECONDS:
                plot_metrics(run, plots)
                last_plot = time.time()
        for every, hook in hooks:
            if every and state["step"] % every == 0:
                hook(state["step"])
    progress.close()
    run.save(w.model, w.ema, w.opt, state)
    if t.stop_at and t.stop_at <= state["step"] < t.steps:
        log(d, f"{name}: paused at step {state['step']} of {t.steps} (train.stop_at); continue "
               f"with --resume and a later train.stop_at, or 0 to finish")  # fmt: skip
        return False
    return True
