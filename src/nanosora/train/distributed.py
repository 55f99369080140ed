"""Data parallelism applied from outside the model: process groups, DDP/FSDP2, sharded checkpoints.

The model code (``models/dit.py``, ``models/vae.py``) is single-device and never branches on
parallelism; this file is the one place that knows about processes. Launch with torchrun (or
``accelerate launch``, which starts the same processes) and set ``train.parallel``:

    torchrun --nproc_per_node=8 -m nanosora.cli train dit|vae --config C train.parallel=fsdp

What it provides, in the order the DiT and VAE loops use it:
1. ``init_distributed``: reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK, starts a process group
   (NCCL on GPUs, gloo on CPUs) with a timeout so a lost peer fails the run instead of hanging it;
2. ``micro_batches``: which rows of the global batch this rank computes, one slice per
   gradient-accumulation micro-batch. Every rank draws the *global* batch's noise and timesteps
   and keeps its rows, so N processes follow the trajectory of one process with the same global
   batch (up to float summation order);
3. ``wrap_model``: activation checkpointing per block (DiT blocks, VAE encoder/decoder stages),
   then DDP or FSDP2 ``fully_shard`` per block and once at the root (torchtitan's recipe);
4. ``ShardedRunDir``: a run directory whose optimizer/model/EMA state is a
   ``torch.distributed.checkpoint`` (DCP) folder written by every rank, plus gathered
   ``model.safetensors``/``ema.safetensors`` written by rank 0 for inference. DCP reshards on
   load, so a run saved by 2 FSDP processes resumes on 1, 4 or 8, with DDP or FSDP; a plain
   1-process run's files are loaded whole on every rank and sharded there.
Only rank 0 logs metrics and writes files; the others wait at barriers. A result computed once
(the VAE's latent statistics) reaches the other ranks by ``broadcast``.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from nanosora.config import TrainConfig
from nanosora.train.checkpoint import EMA, RunDir, check_shapes, move_into_place, staging_dir


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (the defaults are a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    parallel: str = "none"
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        """A process group exists (collectives, DCP, barriers are real)."""
        return self.parallel != "none"


def log(d: Dist, message: str, all_ranks: bool = False) -> None:
    """Print on rank 0 (or on every rank, prefixed, for things that differ between ranks)."""
    if all_ranks:
        print(f"[rank {d.rank}/{d.world_size}] {message}", flush=True)
    elif d.is_main:
        print(message, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(t: TrainConfig) -> Dist:
    """Join the job torchrun/accelerate started (or a 1-process group for a plain ``python``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if t.parallel == "none":
        if world > 1:
            raise ValueError(
                f"launched as {world} processes (WORLD_SIZE={world}) with train.parallel=none: "
                "each would train its own copy; set train.parallel=ddp or fsdp"
            )
        return Dist()
    if "WORLD_SIZE" not in os.environ:
        # `accelerate launch --cpu --num_processes N` starts ONE process without torchrun's
        # variables (seen with accelerate 1.x): say so instead of silently training alone.
        hint = (
            " (accelerate --cpu ignores --num_processes)"
            if "ACCELERATE_USE_CPU" in os.environ
            else ""
        )
        print(
            f"train.parallel={t.parallel} but no launcher set WORLD_SIZE{hint}: training in ONE "
            "process; start N with torchrun --nproc_per_node=N or "
            "accelerate launch --config_file configs/accelerate/multi_gpu.yaml",
            flush=True,
        )
    if "RANK" not in os.environ:  # started without a launcher: a group of one
        os.environ.update(
            MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1"
        )
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=t.dist_timeout)
        )
    d = Dist(dist.get_rank(), dist.get_world_size(), local_rank, t.parallel, device)
    log(d, f"{t.parallel} on {device.type}, {d.world_size} process(es)", all_ranks=True)
    return d


def finish(d: Dist) -> None:
    """Leave the process group (every rank; the last collective must have completed)."""
    if d.active and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_if_launched() -> None:
    """End a finished torchrun worker now, skipping interpreter teardown: gloo's native threads
    torn down at finalization can abort (SIGABRT) a process whose run already completed."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def micro_batches(batch_size: int, d: Dist, grad_accum: int = 1) -> list[slice]:
    """Rows of the global batch this rank computes, one slice per micro-batch.

    Rank r owns rows [r * B/W, (r + 1) * B/W), cut into ``grad_accum`` equal micro-batches; the
    loss of each is its mean / grad_accum, and DDP/FSDP average over ranks, so the gradient is
    the global batch's mean gradient exactly.
    """
    parts = d.world_size * grad_accum
    if batch_size % parts:
        raise ValueError(
            f"train.batch_size={batch_size} (the global batch) cannot be split evenly over "
            f"{d.world_size} process(es) x train.grad_accum={grad_accum}: use a multiple of {parts}"
        )
    local, micro = batch_size // d.world_size, batch_size // parts
    start = d.rank * local
    return [slice(start + i * micro, start + (i + 1) * micro) for i in range(grad_accum)]


def checkpoint_blocks(blocks: Sequence[nn.Module]) -> None:
    """Recompute every one of ``blocks`` in the backward pass (activation checkpointing).

    The block's ``forward`` is replaced on the instance, so parameter names (and checkpoints) are
    unchanged; FSDP's hooks sit on ``__call__`` around it.
    """
    from torch.utils.checkpoint import checkpoint

    for block in blocks:
        block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)


def wrap_model(
    model: nn.Module, d: Dist, t: TrainConfig, blocks: Sequence[nn.Module] | None = None
) -> nn.Module:
    """The module to call for training; parameters stay reachable through ``model`` itself.

    ``blocks`` are the units of activation checkpointing and FSDP sharding (default: the DiT's
    ``model.blocks``; the VAE passes its encoder and decoder stages). FSDP2 shards each block
    separately (its parameters are all-gathered just before the block runs and freed after),
    then the root for what is left (embeddings, input/output layers).
    """
    blocks = model.blocks if blocks is None else blocks
    if t.activation_checkpointing:
        checkpoint_blocks(blocks)
    match d.parallel:
        case "none":
            return model
        case "ddp":
            from torch.nn.parallel import DistributedDataParallel

            ids = [d.device.index] if d.device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids)
        case "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in blocks:
                fully_shard(block)
            fully_shard(model)
            return model
    raise ValueError(f"unknown train.parallel={d.parallel!r}")


@contextlib.contextmanager
def no_sync(model: nn.Module, d: Dist) -> Iterator[None]:
    """Skip the gradient all-reduce (DDP) / reduce-scatter (FSDP) for a non-final micro-batch."""
    if d.parallel == "ddp":
        with model.no_sync():
            yield
    elif d.parallel == "fsdp":
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)
    else:
        yield


def mean_across(value: float, d: Dist) -> float:
    """Mean of a per-rank scalar over ranks (each rank's loss is its rows' mean: equal sizes)."""
    if not d.active or d.world_size == 1:
        return value
    x = torch.tensor([value], dtype=torch.float64, device=d.device)
    dist.all_reduce(x)
    return float(x.item()) / d.world_size


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when it is true on one: ranks must agree to stop (a wall-clock budget
    runs out at slightly different times on each), or the others wait in a collective forever."""
    if not d.active or d.world_size == 1:
        return flag
    x = torch.tensor([float(flag)], device=d.device)
    dist.all_reduce(x, op=dist.ReduceOp.MAX)
    return bool(x.item())


def broadcast(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Rank 0's ``x`` on every rank (same shape everywhere): a result computed once, shared."""
    if not d.active or d.world_size == 1:
        return x
    y = x.detach().to(d.device).contiguous()
    dist.broadcast(y, src=0)
    return y.to(x.device)


def full_tensor(x: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind an FSDP shard (a collective: every rank must call it)."""
    from torch.distributed.tensor import DTensor

    return x.full_tensor() if isinstance(x, DTensor) else x


class ShardedRunDir(RunDir):
    """A run directory for multi-process runs; files as in ``RunDir`` plus ``checkpoint/`` (DCP).

    ``state.pt`` holds the loop state, the world size and the parameter shapes that wrote it;
    optimizer, weights and EMA live in ``checkpoint/`` (every rank writes its shards).
    """

    def __init__(self, path: str | Path, d: Dist):
        super().__init__(path)
        self.d = d

    def start(self, cfg: Any, resume: bool) -> None:
        self.cfg = cfg
        if self.d.is_main:
            super().start(cfg, resume)
        barrier(self.d)
        if not self.d.is_main and self.exists() and not resume:  # rank 0 raised; fail alike
            raise FileExistsError(f"{self.path} already holds a run (state.pt); pass --resume")

    def log(self, record: dict[str, Any]) -> None:
        if self.d.is_main:
            super().log(record)

    def truncate_metrics(self, step: int) -> None:
        if self.d.is_main:
            super().truncate_metrics(step)
        barrier(self.d)

    def save(
        self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        """Every rank writes its shards; rank 0 gathers full weights and moves all into place."""
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
        )

        # 1. Sharded state, resumable at any world size.
        tmp = staging_dir(self.path) if self.d.is_main else self.path / ".ckpt.tmp"
        barrier(self.d)
        dcp.save(self._sharded(model, ema, optimizer), checkpoint_id=tmp / "checkpoint")
        # 2. Full weights for inference and export (gathering is collective).
        full = get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        full_ema = {k: full_tensor(v).cpu() for k, v in ema.state_dict().items()} if ema else {}
        # 3. Rank 0 moves everything into place; state.pt last marks a complete checkpoint.
        if self.d.is_main:
            save_file({k: v.contiguous() for k, v in full.items()}, str(tmp / "model.safetensors"))
            if ema is not None:
                save_file(
                    {k: v.contiguous() for k, v in full_ema.items()}, str(tmp / "ema.safetensors")
                )
            shapes = {k: tuple(v.shape) for k, v in full.items()}
            meta = {**state, "world_size": self.d.world_size, "parallel": self.d.parallel}
            torch.save({**meta, "shapes": shapes}, tmp / "state.pt")
            old = self.path / ".checkpoint.old"
            shutil.rmtree(old, ignore_errors=True)
            if (self.path / "checkpoint").is_dir():
                os.replace(self.path / "checkpoint", old)
            os.replace(tmp / "checkpoint", self.path / "checkpoint")
            move_into_place(tmp, self.path)
            shutil.rmtree(old, ignore_errors=True)
        barrier(self.d)

    def load(self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer) -> dict:
        """Restore weights, EMA and optimizer from the DCP folder, resharding to this job (or
        from a 1-process run's files, sharding them here)."""
        state = torch.load(self.path / "state.pt", weights_only=False)
        if not (self.path / "checkpoint").is_dir() or "shapes" not in state:
            state = self._load_single_process(model, ema, optimizer, state)
        else:
            state = self._load_sharded(model, ema, optimizer, state)
        if self.d.is_main:
            self.save_resumed_config()
        return state

    def _load_sharded(
        self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer, state: dict
    ) -> dict:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import (
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        check_shapes(state.pop("shapes"), model, self.path)
        saved = (state.pop("world_size"), state.pop("parallel"))
        if saved != (self.d.world_size, self.d.parallel):
            log(
                self.d,
                f"checkpoint written by {saved[0]} process(es) ({saved[1]}); resuming with "
                f"{self.d.world_size} ({self.d.parallel}): DCP reshards on load",
            )
        sd = self._sharded(model, ema, optimizer)
        dcp.load(sd, checkpoint_id=self.path / "checkpoint")
        set_model_state_dict(model, sd["model"])
        set_optimizer_state_dict(model, optimizer, sd["optim"])
        if ema is not None:
            ema.load_state_dict(sd["ema"])
        return state

    def _load_single_process(
        self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer, state: dict
    ) -> dict:
        """A checkpoint of a plain 1-process run (full tensors; optimizer state keyed by
        parameter index): every rank reads the files and keeps what it owns."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )
        from torch.distributed.tensor import DTensor, distribute_tensor

        log(
            self.d,
            f"{self.path} was written by 1 process (train.parallel=none); resuming with "
            f"{self.d.world_size} ({self.d.parallel}): full weights and optimizer state are "
            "loaded on every rank and sharded here",
        )
        weights = load_file(str(self.path / "model.safetensors"))
        check_shapes({k: tuple(v.shape) for k, v in weights.items()}, model, self.path)
        full = StateDictOptions(full_state_dict=True)
        set_model_state_dict(model, weights, options=full)
        # torch.optim numbers parameters in param-group order; the DCP API wants their names.
        names = {p: n for n, p in model.named_parameters()}
        fqns = [names[p] for g in optimizer.param_groups for p in g["params"]]
        plain = state.pop("optimizer")
        by_name = {
            "state": {fqns[i]: v for i, v in plain["state"].items()},
            "param_groups": [
                {**g, "params": [fqns[i] for i in g["params"]]} for g in plain["param_groups"]
            ],
        }
        set_optimizer_state_dict(model, optimizer, by_name, options=full)
        if ema is not None and (self.path / "ema.safetensors").is_file():
            shadow = load_file(str(self.path / "ema.safetensors"))
            for k, ref in ema.shadow.items():  # FSDP: shard like the live shadow
                v = shadow[k].to(ref.device)
                ema.shadow[k] = (
                    distribute_tensor(v, ref.device_mesh, ref.placements)
                    if isinstance(ref, DTensor)
                    else v
                )
        return state

    def _sharded(
        self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer
    ) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import (
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        sd = {
            "model": get_model_state_dict(model),
            "optim": get_optimizer_state_dict(model, optimizer),
        }
        if ema is not None:
            sd["ema"] = ema.state_dict()
        return sd


def open_run(path: str | Path, d: Dist) -> RunDir:
    """A plain ``RunDir`` for single-process runs, else one that saves sharded checkpoints.

    A single process also opens a sharded directory (one written by a multi-process run) as such,
    so ``train.parallel=none`` can resume an FSDP run.
    """
    if d.active or (Path(path) / "checkpoint").is_dir():
        return ShardedRunDir(path, d)
    return RunDir(path)
