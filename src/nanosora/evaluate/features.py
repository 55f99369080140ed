"""Video feature networks for Fréchet distances: a local I3D (FVD) or nanosora's own shapes encoder.

FVD (Unterthiner et al. 2018) compares the statistics of I3D features of two video sets. The I3D
weights cannot be downloaded here, so ``load_i3d`` takes a local TorchScript file: the
``i3d_torchscript.pt`` that StyleGAN-V (Skorokhodov et al. 2022) and most later video papers use,
called as ``detector(x, rescale=False, resize=False, return_features=True)`` on ``(B, 3, T, 224,
224)`` float videos in [-1, 1]; the 400-d pre-logit features go into the Fréchet distance. Both
sets must have the same number of frames and resolution (checked by the caller).

Without I3D, ``ShapesVideoEncoder`` is a small 3D-conv network that nanosora trains on the shapes
world itself (``train_encoder``: predict colour, shape and direction from freshly rendered,
lightly degraded clips; a few CPU-minutes). The Fréchet distance on its features is reported as
the "Fréchet shapes distance" (FSD), never as FVD: it is a different feature space with a
different scale, and values are only comparable when computed with the same encoder run and the
same number of clips.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from nanosora.data.datasets import frames_to_tensor
from nanosora.shapes.world import COLORS, DIRECTIONS, SHAPES, render, sample_spec

I3D_SIZE = 224  # I3D's input resolution (Carreira & Zisserman 2017)


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and training recipe of the shapes encoder (written to ``config.yaml``)."""

    width: int = 16  # channels of the first conv; doubled at each of the two later stages
    feature_dim: int = 64  # size of the feature vector the Fréchet distance is computed on
    steps: int = 1000  # optimiser steps
    batch_size: int = 24  # clips per step, rendered fresh each step
    lr: float = 3e-3  # AdamW learning rate (cosine decay to 0)
    seed: int = 0  # seeds the clips, the augmentations and the initial weights

    def __post_init__(self) -> None:
        if min(self.width, self.feature_dim, self.steps, self.batch_size) < 1 or self.lr <= 0:
            raise ValueError(f"encoder config needs positive sizes and lr, got {self}")


class ShapesVideoEncoder(nn.Module):
    """(B, 3, T, H, W) in [-1, 1] -> (B, feature_dim) features; heads read colour, shape, direction.

    Frames are resized to 64x64 (the shapes world's size), then three 3x3x3 convolutions (the
    first stride 2 in space only, the next two stride 2 in time and space) and a global average
    pool; any frame count >= 1 works.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        w = cfg.width
        self.convs = nn.Sequential(
            nn.Conv3d(3, w, 3, stride=(1, 2, 2), padding=1),
            nn.ReLU(),
            nn.Conv3d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv3d(2 * w, 4 * w, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.proj = nn.Linear(4 * w, cfg.feature_dim)
        self.heads = nn.ModuleDict(
            {
                "color": nn.Linear(cfg.feature_dim, len(COLORS)),
                "shape": nn.Linear(cfg.feature_dim, len(SHAPES)),
                "direction": nn.Linear(cfg.feature_dim, len(DIRECTIONS)),
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, T, H, W) -> (B, feature_dim)."""
        x = F.interpolate(x, size=(x.shape[2], 64, 64), mode="trilinear", align_corners=False)
        return self.proj(self.convs(x).mean(dim=(2, 3, 4)))  # (B, 4w, t, h, w) -> (B, 4w) -> (B, D)

    def classify(self, x: Tensor) -> dict[str, Tensor]:
        """(B, 3, T, H, W) -> logits per attribute, {name: (B, classes)}."""
        f = F.relu(self.forward(x))
        return {name: head(f) for name, head in self.heads.items()}


_LABELS = {"color": list(COLORS), "shape": list(SHAPES), "direction": list(DIRECTIONS)}


def _batch(rng: np.random.Generator, n: int, augment: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """n freshly rendered clips (B, 3, T, 64, 64) and their labels; augmented like samples."""
    specs = [sample_spec(rng, "all") for _ in range(n)]
    x = torch.stack([frames_to_tensor(render(s)) for s in specs])
    if augment:
        # Generated clips are blurrier, noisier and slightly off in level than the renders: a
        # random box blur, per-clip gain and Gaussian noise make the features robust to that.
        if rng.random() < 0.5:
            x = F.avg_pool3d(x, (1, 3, 3), stride=1, padding=(0, 1, 1), count_include_pad=False)
        gain = torch.from_numpy(rng.uniform(0.85, 1.1, (n, 1, 1, 1, 1))).float()
        noise = torch.from_numpy(rng.normal(0, 1, x.shape)).float() * float(rng.uniform(0, 0.08))
        x = ((x + 1) * gain - 1 + noise).clamp(-1, 1)
    labels = {a: torch.tensor([_LABELS[a].index(getattr(s, a)) for s in specs]) for a in _LABELS}
    return x, labels


def train_encoder(out_dir: str | Path, cfg: EncoderConfig = EncoderConfig()) -> Path:
    """Train a ``ShapesVideoEncoder`` and save it as a run dir; returns ``out_dir``.

    Writes ``config.yaml``, ``model.safetensors`` and ``metrics.jsonl`` (loss every 25 steps and
    the final accuracy per attribute on 128 held-aside clips, un-augmented).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = ShapesVideoEncoder(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    rng = np.random.default_rng([cfg.seed, 1])
    log = []
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        x, y = _batch(rng, cfg.batch_size, augment=True)
        logits = model.classify(x)
        loss = sum(F.cross_entropy(logits[a], y[a]) for a in _LABELS)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == cfg.steps:
            log.append({"step": step, "loss": loss.item(), "seconds": time.perf_counter() - start})
    accuracy = encoder_accuracy(model, num=128, seed=cfg.seed + 1000)
    log.append({"step": cfg.steps, "accuracy": accuracy, "seconds": time.perf_counter() - start})
    (out / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
    save_file(model.state_dict(), out / "model.safetensors")
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    return out


@torch.no_grad()
def encoder_accuracy(model: ShapesVideoEncoder, num: int = 128, seed: int = 1000) -> dict:
    """Accuracy per attribute on ``num`` clean rendered clips (a seed apart from training's)."""
    model.eval()
    x, y = _batch(np.random.default_rng([seed, 2]), num, augment=False)
    logits = model.classify(x)
    model.train()
    return {a: float((logits[a].argmax(1) == y[a]).float().mean()) for a in _LABELS}


def load_encoder(run_dir: str | Path) -> ShapesVideoEncoder:
    """Load a run dir written by ``train_encoder`` (eval mode)."""
    d = Path(run_dir)
    if not (d / "model.safetensors").is_file() or not (d / "config.yaml").is_file():
        raise FileNotFoundError(
            f"{d} is not a shapes-encoder run (needs config.yaml and model.safetensors); "
            "train one with `nanosora eval --train-encoder DIR`"
        )
    model = ShapesVideoEncoder(EncoderConfig(**yaml.safe_load((d / "config.yaml").read_text())))
    model.load_state_dict(load_file(d / "model.safetensors"))
    return model.eval()


def load_torchscript(path: str | Path, hint: str) -> torch.jit.ScriptModule:
    """A network from a local TorchScript file, on the CPU, in eval mode; ``hint`` says what the
    file should be when it is missing (nothing is ever downloaded)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: {hint} (nothing is downloaded)")
    return torch.jit.load(str(p), map_location="cpu").eval()


def load_i3d(path: str | Path) -> torch.jit.ScriptModule:
    """The I3D feature network from a local TorchScript file."""
    return load_torchscript(
        path,
        "FVD needs a local copy of StyleGAN-V's i3d_torchscript.pt; without it, use the "
        "Fréchet shapes distance (--encoder)",
    )


@torch.no_grad()
def video_features(
    net: nn.Module | torch.jit.ScriptModule,
    videos: list[np.ndarray] | np.ndarray,
    i3d: bool = False,
    batch_size: int = 16,
) -> np.ndarray:
    """Features of uint8 (T, H, W, C) videos -> (N, D) float64.

    ``i3d=True``: videos resized to 224x224 and passed as I3D's TorchScript expects (see module
    docstring); otherwise ``net`` is a ``ShapesVideoEncoder``.
    """
    feats = []
    for lo in range(0, len(videos), batch_size):
        x = torch.stack([frames_to_tensor(v) for v in videos[lo : lo + batch_size]])
        if i3d:
            size = (x.shape[2], I3D_SIZE, I3D_SIZE)
            x = F.interpolate(x, size=size, mode="trilinear", align_corners=False)
            f = net(x, rescale=False, resize=False, return_features=True)
        else:
            f = net(x)
        feats.append(f.double().reshape(len(x), -1).numpy())
    return np.concatenate(feats)
