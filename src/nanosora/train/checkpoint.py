"""Run directories: resolved config, weights, optimizer state, metrics, environment.

A run directory holds everything needed to resume or to load a model, and nothing else:

    config.yaml        the resolved config (the run can be reproduced from it alone)
    model.safetensors  raw weights          ema.safetensors  EMA weights (what sampling uses)
    state.pt           optimizer, step, RNG state           metrics.jsonl  one JSON line per log
    env.json           versions and machine                 samples/, loss.png

Checkpoints are written into a temporary folder and moved into place file by file after every
file is complete, so a run killed mid-save still has its previous, consistent checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from nanosora.config import save_config
from nanosora.pipeline import load_module_config, load_weights


class EMA:
    """Exponential moving average of a model's parameters and buffers (kept in float32)."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average toward ``model``; the decay warms up as (1 + step) / (10 + step) so a
        short run's EMA is not dominated by its random initialisation."""
        decay = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.float(), 1.0 - decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone().float() for k, v in state.items()}


class RunDir:
    """A training run's directory; see the module docstring for its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.cfg: Any = None  # the config ``start`` was given

    def exists(self) -> bool:
        return (self.path / "state.pt").is_file()

    def start(self, cfg: Any, resume: bool) -> None:
        """Create the directory; refuse to overwrite a finished or running run unless resuming."""
        if self.exists() and not resume:
            raise FileExistsError(
                f"{self.path} already holds a run (state.pt); pass --resume to continue it "
                "or choose another train.out_dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "samples").mkdir(exist_ok=True)
        self.cfg = cfg
        if not (resume and self.exists()):  # a resumed run's config: once its checkpoint loaded
            save_config(cfg, self.path / "config.yaml")
        write_env(self.path / "env.json")

    def save_resumed_config(self) -> None:
        """Record the config a run resumes with, after its checkpoint loaded: a refused resume
        (another preset, say) leaves ``config.yaml`` describing the weights next to it."""
        if self.cfg is not None:
            save_config(self.cfg, self.path / "config.yaml")

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        p = self.path / "metrics.jsonl"
        if not p.is_file():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

    def truncate_metrics(self, step: int) -> None:
        """Drop metric lines past ``step`` (logged after the checkpoint a resume starts from)."""
        kept = [r for r in self.metrics() if r.get("step", 0) <= step]
        (self.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))

    def save(
        self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer, state: dict
    ) -> None:
        """Atomically replace the checkpoint with the current weights and loop state."""
        tmp = staging_dir(self.path)
        save_file(_contiguous(model.state_dict()), str(tmp / "model.safetensors"))
        if ema is not None:
            save_file(_contiguous(ema.state_dict()), str(tmp / "ema.safetensors"))
        torch.save({**state, "optimizer": optimizer.state_dict()}, tmp / "state.pt")
        move_into_place(tmp, self.path)

    def load(self, model: nn.Module, ema: EMA | None, optimizer: torch.optim.Optimizer) -> dict:
        """Restore weights, EMA and optimizer; return the loop state (step, ...)."""
        weights = load_file(str(self.path / "model.safetensors"))
        check_shapes({k: tuple(v.shape) for k, v in weights.items()}, model, self.path)
        model.load_state_dict(weights)
        if ema is not None and (self.path / "ema.safetensors").is_file():
            ema.load_state_dict(load_file(str(self.path / "ema.safetensors")))
        state = torch.load(self.path / "state.pt", weights_only=False)
        try:
            optimizer.load_state_dict(state.pop("optimizer"))
        except (KeyError, ValueError) as e:
            raise ValueError(
                f"{self.path / 'state.pt'}: its optimizer state does not fit this run's optimizer "
                f"(resume with the optim.kind the run was trained with): {e}"
            ) from e
        self.save_resumed_config()
        return state


def staging_dir(run_path: Path) -> Path:
    """An empty folder inside the run where a checkpoint is written before it replaces the last."""
    tmp = run_path / ".ckpt.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def move_into_place(tmp: Path, run_path: Path) -> None:
    """Move a complete checkpoint from ``tmp`` into the run, ``state.pt`` last (its presence
    marks a complete checkpoint), and remove ``tmp``."""
    for name in ("model.safetensors", "ema.safetensors", "state.pt"):
        if (tmp / name).exists():
            os.replace(tmp / name, run_path / name)
    shutil.rmtree(tmp, ignore_errors=True)


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in sd.items()}


def module_dir(source: str | Path, module: str) -> Path:
    """``init_from``'s model directory: a pipeline's ``module`` folder, or the run itself."""
    d = Path(source)
    return d / module if (d / module).is_dir() else d


def init_weights(source: str | Path, module: str) -> dict[str, torch.Tensor]:
    """``init_from``'s weights: a run's (EMA) weights, or the ``module`` folder of a pipeline."""
    return load_weights(module_dir(source, module))


def load_weights_into(
    model: nn.Module, source: str | Path, module: str, what: str, cfg: Any = None
) -> None:
    """``init_from``: `init_weights` into ``model``; every name must match (a clear error names
    the differences). Given the model's config ``cfg``, the source's own config must match it
    too: settings without parameters (``dit.abs_pos``, ``dit.attention``) escape a shape check."""
    weights = init_weights(source, module)
    check_shapes({k: tuple(v.shape) for k, v in weights.items()}, model, f"init_from={source}")
    if cfg is not None:
        check_init_config(source, module, what, cfg)
    model.load_state_dict(weights)


def check_init_config(source: str | Path, module: str, section: str, cfg: Any) -> None:
    """Refuse ``init_from`` weights whose config.yaml (a pipeline's ``module``/ or a run's
    ``section``) differs from ``cfg`` in any field, naming each; bare weights pass unchecked."""
    d = module_dir(source, module)
    if not (d / "config.yaml").is_file():
        return
    saved = load_module_config(d, type(cfg), section)
    names = [
        f.name for f in dataclasses.fields(cfg) if getattr(saved, f.name) != getattr(cfg, f.name)
    ]
    if names:
        diffs = [
            f"{section}.{n}={getattr(saved, n)!r} there, {getattr(cfg, n)!r} here" for n in names
        ]
        raise ValueError(
            f"init_from={source} was trained with other {section}.* settings"
            f" ({d / 'config.yaml'}): {'; '.join(diffs)}. Set them as there"
        )


def check_shapes(saved: dict[str, tuple[int, ...]], model: nn.Module, where: str | Path) -> None:
    """Refuse the weights of another model (preset, width, depth, LoRA rank) naming what differs,
    instead of the raw size-mismatch traceback ``load_state_dict`` would give."""
    current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if saved == current:
        return
    missing, extra = sorted(set(current) - set(saved)), sorted(set(saved) - set(current))
    changed = [
        f"{k}: saved {saved[k]} vs now {current[k]}"
        for k in current
        if saved.get(k, current[k]) != current[k]
    ]
    raise ValueError(
        f"{where} holds weights that do not match this model (another preset or other vae.*/"
        f"dit.* settings): {len(missing)} parameters missing (e.g. {missing[:3]}), "
        f"{len(extra)} unexpected (e.g. {extra[:3]}), {len(changed)} with other shapes "
        f"(e.g. {changed[:3]})"
    )


def write_env(path: Path) -> None:
    """Record versions and machine facts next to the run, for reproducibility."""
    env = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    path.write_text(json.dumps(env, indent=2))


def lr_at(
    step: int, peak: float, warmup: int, total: int, min_ratio: float, time_fraction: float = 0.0
) -> float:
    """Linear warmup to ``peak``, then cosine decay to ``peak * min_ratio``.

    The decay ends at step ``total`` or when ``time_fraction`` (share of a wall-clock budget
    used) reaches 1, whichever comes first: a time-limited run still anneals.
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, max((step - warmup) / max(1, total - warmup), time_fraction))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is on disk."""


def plot_metrics(run: RunDir, keys: tuple[str, ...], out: str = "loss.png") -> Path | None:
    """Plot metric curves (log scale) into the run directory; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = run.metrics()
    if not records:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
        if pts:
            ax.plot(*zip(*pts))
            if all(v > 0 for _, v in pts):
                ax.set_yscale("log")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = run.path / out
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
