"""The generation pipeline and the one place that loads and saves trained models.

A pipeline directory holds everything needed to generate, and nothing else:

    pipeline.yaml               PipelineConfig: text encoder, sampler defaults, clip shape
    vae/config.yaml             VAEConfig            vae/model.safetensors
    transformer/config.yaml     DiTConfig            transformer/model.safetensors

A training run directory (train/checkpoint.py) holds the resolved training config and raw and EMA
weights; ``load_weights`` and ``load_vae`` read either kind of directory. Generation, the DiT
trainer's samples, the latent cache and evaluation all load models through this module.

Generation is deterministic for a fixed seed: prompt i of a batch uses the noise of seed + i (or
an explicit per-prompt seed), so a prompt's video does not depend on which other prompts share
its batch, up to the float rounding of batched kernels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from nanosora.config import DiTConfig, PipelineConfig, VAEConfig, from_dict, save_config
from nanosora.diffusion.flow import (
    classifier_free_guidance,
    frame_timesteps,
    guidance_active,
    resolution_shift,
    sample_schedule,
    stochastic_sample,
)
from nanosora.lora import load_adapter, merge_lora
from nanosora.models.dit import VideoDiT
from nanosora.models.text_encoder import TextEncoder, load_text_encoder
from nanosora.models.vae import VideoVAE
from nanosora.shapes.world import vocabulary_warning

SHIPPED_MODEL = Path(__file__).parent / "assets" / "shapes-model"
FEW_STEP = "transformer_fewstep"  # a pipeline's distilled few-step transformer
MAX_PROMPT_CHARS = 500


class PromptError(ValueError):
    """A prompt the pipeline refuses, with the reason."""


def check_prompt(prompt: str, vocabulary: str = "") -> list[str]:
    """Raise PromptError for unusable prompts; return warnings for prompts the model may not know."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptError(
            "the prompt is empty: describe the video, e.g. 'a red circle moving left'"
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptError(
            f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are used"
        )
    if any(not ch.isprintable() for ch in prompt):
        raise PromptError(f"the prompt {prompt!r} contains control characters")
    warning = vocabulary_warning(prompt) if vocabulary == "shapes" else None
    return [warning] if warning else []


def load_weights(run_dir: str | Path, prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The float32 weights of a run or pipeline module directory: the EMA ones when there are
    (a training run), else ``model.safetensors``."""
    d = Path(run_dir)
    for name in ("ema.safetensors", "model.safetensors") if prefer_ema else ("model.safetensors",):
        if (d / name).is_file():
            return {k: v.float() for k, v in load_file(str(d / name)).items()}
    raise FileNotFoundError(f"no model.safetensors or ema.safetensors in {d}")


def load_module(directory: str | Path, cfg_cls: type, model_cls: type, section: str):
    """A model from a directory with ``config.yaml`` and weights, in eval mode.

    ``config.yaml`` is either the model's own config (a pipeline's ``vae/``, ``transformer/``) or
    a training run's whole config, whose ``section`` key holds it.
    """
    d = Path(directory)
    if not (d / "config.yaml").is_file():
        raise FileNotFoundError(f"{d} is not a model directory: config.yaml is missing")
    model = model_cls(load_module_config(d, cfg_cls, section))
    model.load_state_dict(load_weights(d))
    return model.eval()


def load_module_config(directory: str | Path, cfg_cls: type, section: str):
    """The ``cfg_cls`` config in a model directory's ``config.yaml``: the model's own, or the
    ``section`` of a training run's whole config."""
    path = Path(directory) / "config.yaml"
    raw = yaml.safe_load(path.read_text()) or {}
    return from_dict(cfg_cls, raw[section] if section in raw else raw, str(path))


def load_vae(directory: str | Path) -> VideoVAE:
    """A trained VAE (EMA weights, latent statistics included) from a run or a pipeline's vae/."""
    return load_module(directory, VAEConfig, VideoVAE, "vae")


def load_pipeline_config(directory: str | Path | None = None) -> PipelineConfig:
    """The settings of a pipeline directory (default: the shipped model), without its weights."""
    d = Path(directory) if directory else SHIPPED_MODEL
    if not d.is_dir():
        raise FileNotFoundError(f"model directory {d} does not exist")
    if not (d / "pipeline.yaml").is_file():
        hint = " (the shipped model is missing: reinstall nanosora)" if directory is None else ""
        raise FileNotFoundError(f"{d} is not a nanosora pipeline: pipeline.yaml is missing{hint}")
    return from_dict(PipelineConfig, yaml.safe_load((d / "pipeline.yaml").read_text()))


class Pipeline:
    """Text, optionally with given first frames, to video with a VAE, a DiT and a text encoder."""

    def __init__(
        self,
        vae: VideoVAE,
        dit: VideoDiT,
        text_encoder: TextEncoder,
        cfg: PipelineConfig,
        few_step: VideoDiT | None = None,
    ):
        self.vae, self.dit, self.text_encoder, self.cfg = vae.eval(), dit.eval(), text_encoder, cfg
        # A transformer distilled for few-step sampling (train/distill.py), with guidance built in.
        self.few_step = few_step.eval() if few_step is not None else None
        if cfg.few_step_max and few_step is None:
            raise ValueError("pipeline.yaml sets few_step_max but transformer_fewstep/ is missing")

    @classmethod
    def load(cls, path: str | Path | None = None, lora: str | Path | None = None) -> Pipeline:
        """Load a pipeline directory (default: the shipped shapes model); ``lora``: a LoRA
        adapter directory (``RUN/lora``) merged into the transformer."""
        d = Path(path) if path else SHIPPED_MODEL
        cfg = load_pipeline_config(path)
        vae = load_vae(d / "vae")
        dit = load_module(d / "transformer", DiTConfig, VideoDiT, "dit")
        if lora is not None:
            merged = merge_lora(load_adapter(dit, lora))  # injects into dit, then folds in
            dit = VideoDiT(dit.cfg)
            dit.load_state_dict(merged)
            cfg = dataclasses.replace(cfg, vocabulary="")  # the adapter may know new words
            # the distilled transformer does not know the adapter's concept
            cfg = dataclasses.replace(cfg, few_step_max=0)
        few_step = None
        if cfg.few_step_max:
            few_step = load_module(d / FEW_STEP, DiTConfig, VideoDiT, "dit")
        return cls(vae, dit, load_text_encoder(cfg.text), cfg, few_step)

    def save(self, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write the pipeline directory; weights stored in ``dtype`` (fp16 halves the size)."""
        d = Path(path)
        modules = [("vae", self.vae), ("transformer", self.dit)]
        if self.few_step is not None:
            modules.append((FEW_STEP, self.few_step))
        for name, module in modules:
            (d / name).mkdir(parents=True, exist_ok=True)
            save_config(module.cfg, d / name / "config.yaml")
            sd = {
                k: (
                    v.to(dtype) if v.dtype.is_floating_point and "latent_" not in k else v
                ).contiguous()
                for k, v in module.state_dict().items()
            }
            save_file(sd, str(d / name / "model.safetensors"))
        save_config(self.cfg, d / "pipeline.yaml")
        return d

    def serves_few_step(
        self, steps: int, num_frames: int | None = None, given: bool = False
    ) -> bool:
        """``PipelineConfig.serves_few_step`` (a set ``few_step_max`` implies the transformer)."""
        return self.few_step is not None and self.cfg.serves_few_step(steps, num_frames, given)

    def sampling_shift(self, latent_shape: tuple[int, ...], few_step: bool = False) -> float:
        """The schedule's shift for latents of ``latent_shape``: ``shift`` (``few_step_shift``,
        0 meaning ``shift``, for the few-step transformer) at base_tokens, grown with the tokens."""
        c = self.cfg
        base = (c.few_step_shift or c.shift) if few_step else c.shift
        grid = self.dit.grid(*latent_shape[1:])
        return resolution_shift(base, grid[0] * grid[1] * grid[2], c.base_tokens)

    def generate(self, prompts: list[str], *args, **kw) -> np.ndarray:
        """Prompts -> uint8 videos (B, T, H, W, C): ``sample_latents`` (same arguments), then
        the VAE decoder."""
        return self.decode_latents(self.sample_latents(prompts, *args, **kw))

    @torch.no_grad()
    def sample_latents(
        self,
        prompts: list[str],
        seed: int = 0,
        steps: int | None = None,
        cfg_scale: float | None = None,
        num_frames: int | None = None,
        seeds: list[int] | None = None,
        cfg_interval: tuple[float, float] | None = None,
        prefix: np.ndarray | None = None,
        eta: float | None = None,
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Prompts -> (B, c, t, h, w) normalised latents; prompt i uses ``seeds[i]`` or
        ``seed + i``.

        Guidance (scale ``cfg_scale``) applies at noise levels inside ``cfg_interval``; ``eta`` is
        the share of noise renewed at each step (0: the deterministic Euler sampler; see
        ``stochastic_sample``). All three default to the pipeline's settings. A prompt's fresh
        noise comes from its own seed's generator, after its starting noise.

        ``prefix``: uint8 frames (K, H, W, C) or (B, K, H, W, C) at the pipeline's size that
        every video starts with, K = 4j+1: K = 1 is image-to-video, more is extension. They are
        encoded to j+1 latent frames that stay clean (noise level 0) while the rest is sampled;
        the model must have been trained with frame masks (``flow.cond_prob`` > 0).

        ``callback(i, x0)``: called at sampling step i with the latent data estimate (see
        ``stochastic_sample``); ``decode_latents`` turns it into frames.

        At ``few_step_max`` steps or fewer, text-to-video of ``num_frames`` frames uses the
        few-step transformer when the pipeline has one, guidance built in and ``few_step_eta``
        its noise share (``cfg_scale`` and ``eta`` do not apply); other lengths use the teacher.
        """
        c = self.cfg
        steps, scale = steps or c.steps, c.cfg_scale if cfg_scale is None else cfg_scale
        interval = tuple(c.cfg_interval if cfg_interval is None else cfg_interval)
        guidance_active(1.0, interval)  # validates the interval before any work
        eta = c.eta if eta is None else eta
        dit, few = self.dit, False
        num_frames = num_frames or c.num_frames
        if self.serves_few_step(steps, num_frames, given=prefix is not None):
            dit, scale, eta, few = self.few_step, 1.0, c.few_step_eta, True
        for p in prompts:
            check_prompt(p)
        shape = self.vae.latent_shape(num_frames, c.height, c.width)  # validates 4k+1
        seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(prompts))]
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        noise = torch.stack([torch.randn(shape, generator=g) for g in generators])
        given = 0
        if prefix is not None:
            clean = self.encode_prefix(prefix, len(prompts), num_frames)
            given = clean.shape[2]
            noise[:, :, :given] = clean
        text, mask = self.text_encoder(list(prompts) + [""])
        cond_text, cond_mask = text[:-1], mask[:-1]
        null_text, null_mask = text[-1:].expand_as(cond_text), mask[-1:].expand_as(cond_mask)
        # The text's keys and values are computed once for all steps.
        cond = dit.encode_text(cond_text, cond_mask)
        both = dit.encode_text(torch.cat([cond_text, null_text]), torch.cat([cond_mask, null_mask]))
        shift = self.sampling_shift(shape, few)

        def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if given:  # the given frames sit at level 0 and do not move
                s = frame_timesteps(s, torch.full_like(s, given, dtype=torch.long), x.shape[2])
                return velocity_of_levels(x, s).index_fill(2, torch.arange(given), 0.0)
            return velocity_of_levels(x, s)

        def velocity_of_levels(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if scale == 1.0 or not guidance_active(float(s.max()), interval):
                return dit(x, s, cond)
            # One batched forward for the conditional and unconditional halves.
            cond_v, uncond_v = dit(torch.cat([x, x]), torch.cat([s, s]), both).chunk(2)
            return classifier_free_guidance(cond_v, uncond_v, scale)

        keep = (torch.arange(shape[1]) < given).view(1, 1, -1, 1, 1) if given else None
        # eta = 0 is the Euler step bit for bit; stochastic_sample validates eta
        schedule = sample_schedule(steps, shift)
        return stochastic_sample(velocity, noise, schedule, eta, generators, keep, callback)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(B, c, t, h, w) normalised latents -> uint8 videos (B, T, H, W, C)."""
        video = self.vae.decode(latents).clamp(-1, 1)
        return ((video + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()

    def encode_prefix(self, prefix: np.ndarray, batch: int, num_frames: int) -> torch.Tensor:
        """uint8 (K, H, W, C) or (B, K, H, W, C) frames -> (B, c, j+1, h, w) normalised latents."""
        c = self.cfg
        frames = np.asarray(prefix)
        if frames.ndim == 4:
            frames = np.broadcast_to(frames, (batch, *frames.shape))
        if frames.ndim != 5 or frames.dtype != np.uint8 or frames.shape[-1] != 3:
            raise ValueError(
                f"prefix must be uint8 RGB frames (K, H, W, 3) or (B, K, H, W, 3), got "
                f"{frames.dtype} {frames.shape}; use prepare_frames() to convert"
            )
        if frames.shape[0] != batch:
            raise ValueError(f"{frames.shape[0]} prefixes for {batch} prompts")
        if frames.shape[2:4] != (c.height, c.width):
            raise ValueError(
                f"prefix frames are {frames.shape[2]}x{frames.shape[3]}, the pipeline makes "
                f"{c.height}x{c.width}; use prepare_frames() to resize"
            )
        k = frames.shape[1]
        if k >= num_frames:
            raise ValueError(f"a prefix of {k} frames leaves nothing to generate in {num_frames}")
        self.vae.latent_frames(k)  # validates 4j+1
        x = torch.from_numpy(np.array(frames)).float().div(127.5).sub(1)
        return self.vae.encode(x.permute(0, 4, 1, 2, 3))

    def extend(
        self,
        prompt: str,
        video: np.ndarray,
        extra: int,
        seed: int = 0,
        steps: int | None = None,
        cfg_scale: float | None = None,
        callback: Callable[[int, torch.Tensor], None] | None = None,
    ) -> np.ndarray:
        """Continue ``video`` (T, H, W, 3) uint8 by ``extra`` frames, window by window: each
        window is given up to half a clip of the latest frames and generates the rest
        (``callback`` as in ``generate``, for every window's steps)."""
        if extra < 1:
            raise ValueError(f"extend needs at least 1 new frame, got {extra}")
        n = self.cfg.num_frames
        out, window = video, 0
        while len(out) < len(video) + extra:
            context = 4 * ((min(len(out), (n - 1) // 2 + 1) - 1) // 4) + 1
            clip = self.generate(
                [prompt],
                seeds=[seed + 7919 * window],
                steps=steps,
                cfg_scale=cfg_scale,
                prefix=out[len(out) - context :],
                callback=callback,
            )[0]
            out = np.concatenate([out, clip[context:]])
            window += 1
        return out[: len(video) + extra]


def replace_cfg(pipe: Pipeline, **changes: object) -> Pipeline:
    """A pipeline sharing the modules with some PipelineConfig fields changed (validated like
    pipeline.yaml); a change given as None keeps the pipeline's value (an unset CLI option)."""
    given = {k: v for k, v in changes.items() if v is not None}
    cfg = dataclasses.replace(pipe.cfg, **given)
    return Pipeline(pipe.vae, pipe.dit, pipe.text_encoder, cfg, pipe.few_step)
