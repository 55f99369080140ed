"""LoRA fine-tuning of the DiT through peft: inject, save the adapter on its own, merge.

Low-rank adapters (Hu et al. 2021) add ``B @ A`` (rank r) beside chosen linear layers and train
only those; the base weights stay frozen. peft does the injection and bookkeeping; this module
is the glue between it and nanosora's run and pipeline directories:

- ``apply_lora(dit, cfg)``: inject adapters into the named linears (fails before any training
  when the names match nothing), freeze everything else;
- ``save_adapter(state, cfg, dir)``: ``adapter.safetensors`` (only the adapter tensors) and
  ``adapter.yaml`` (rank, alpha, targets) -- a few percent of the base model's size;
- ``load_adapter(dit, dir)`` and ``merge_lora(dit)``: put an adapter onto a base model and fold
  it into plain weights, so a merged pipeline is an ordinary ``VideoDiT`` again.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from nanosora.config import LoRAConfig, from_dict, save_config

ADAPTER_FILE, ADAPTER_CONFIG = "adapter.safetensors", "adapter.yaml"


def _peft_config(cfg: LoRAConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.rank,
        lora_alpha=cfg.alpha or cfg.rank,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.targets),
        bias="none",
    )


def apply_lora(dit: torch.nn.Module, cfg: LoRAConfig) -> torch.nn.Module:
    """Inject LoRA adapters into ``dit`` in place; only adapter weights stay trainable."""
    from peft import inject_adapter_in_model

    if cfg.rank < 1:
        raise ValueError(f"lora.rank must be >= 1 to fine-tune with LoRA, got {cfg.rank}")
    linears = {name for name, m in dit.named_modules() if isinstance(m, torch.nn.Linear) and name}
    matched = [n for n in linears if any(n == t or n.endswith("." + t) for t in cfg.targets)]
    if not matched:
        raise ValueError(
            f"lora.targets {list(cfg.targets)} match no linear layer of the DiT; names end in "
            f"e.g. {sorted({n.split('.', 2)[-1] for n in linears})[:12]}"
        )
    inject_adapter_in_model(_peft_config(cfg), dit)
    for name, p in dit.named_parameters():
        p.requires_grad_("lora_" in name)
    return dit


def save_adapter(state: dict[str, torch.Tensor], cfg: LoRAConfig, out: str | Path) -> Path:
    """Write the adapter tensors of a LoRA model's ``state`` dict (e.g. its EMA) on their own."""
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state.items() if "lora_" in k}
    save_file(tensors, str(d / ADAPTER_FILE))
    save_config(cfg, d / ADAPTER_CONFIG)
    return d


def load_adapter(dit: torch.nn.Module, adapter_dir: str | Path) -> torch.nn.Module:
    """Inject the adapter described in ``adapter_dir`` into ``dit`` and load its tensors."""
    d = Path(adapter_dir)
    if not (d / ADAPTER_FILE).is_file() or not (d / ADAPTER_CONFIG).is_file():
        raise FileNotFoundError(
            f"{d} is not a LoRA adapter: needs {ADAPTER_FILE} and {ADAPTER_CONFIG}"
        )
    cfg = from_dict(LoRAConfig, yaml.safe_load((d / ADAPTER_CONFIG).read_text()))
    apply_lora(dit, cfg)
    tensors = {k: v.float() for k, v in load_file(str(d / ADAPTER_FILE)).items()}
    missing, unexpected = dit.load_state_dict(tensors, strict=False)
    lora_missing = [k for k in missing if "lora_" in k]
    if lora_missing or unexpected:
        raise ValueError(
            f"adapter {d} does not fit this DiT (missing {lora_missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    return dit


@torch.no_grad()
def merge_lora(dit: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Fold every adapter into its base weight; returns a plain ``VideoDiT`` state dict."""
    from peft.tuners.lora import LoraLayer

    for module in dit.modules():
        if isinstance(module, LoraLayer):
            module.merge()
    merged = {}
    for k, v in dit.state_dict().items():
        if "lora_" in k:
            continue
        merged[k.replace(".base_layer.", ".")] = v
    return merged
