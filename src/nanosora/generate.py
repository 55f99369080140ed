"""The generation pipeline: prompts -> text features -> Euler sampling with CFG -> VAE decode -> mp4.

A pipeline directory holds everything needed to generate, and nothing else:

    pipeline.yaml               PipelineConfig: text encoder, sampler defaults, clip shape
    vae/config.yaml             VAEConfig            vae/model.safetensors
    transformer/config.yaml     DiTConfig            transformer/model.safetensors

Generation is deterministic for a fixed seed: prompt i of a batch uses the noise of seed + i (or
an explicit per-prompt seed), so a prompt's video does not depend on which other prompts share
its batch, up to the float rounding of batched kernels.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file

from nanosora.config import DiTConfig, PipelineConfig, VAEConfig, from_dict, save_config
from nanosora.diffusion.flow import (
    classifier_free_guidance,
    euler_sample,
    guidance_active,
    resolution_shift,
    sample_schedule,
)
from nanosora.models.dit import VideoDiT
from nanosora.models.text_encoder import TextEncoder, load_text_encoder
from nanosora.models.vae import VideoVAE

SHIPPED_MODEL = Path(__file__).parent / "assets" / "shapes-model"
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
    warnings = []
    if vocabulary == "shapes":
        from nanosora.shapes.captions import parse_prompt

        missing = [
            k for k, v in zip(("colour", "shape", "direction"), parse_prompt(prompt)) if v is None
        ]
        if missing:
            warnings.append(
                f"the shapes model knows colours (red, green, blue, yellow, purple, orange, cyan, white), "
                f"shapes (circle, square, triangle) and directions (left, right, up, down); "
                f"{prompt!r} names no {', no '.join(missing)}"
            )
    return warnings


def _load_module(directory: Path, cfg_cls: type, model_cls: type) -> torch.nn.Module:
    if not (directory / "config.yaml").is_file() or not (directory / "model.safetensors").is_file():
        raise FileNotFoundError(f"{directory} needs config.yaml and model.safetensors")
    cfg = from_dict(cfg_cls, yaml.safe_load((directory / "config.yaml").read_text()))
    model = model_cls(cfg)
    model.load_state_dict(
        {k: v.float() for k, v in load_file(str(directory / "model.safetensors")).items()}
    )
    return model.eval()


class Pipeline:
    """Text (+ later: image/video conditioning) to video with a VAE, a DiT and a text encoder."""

    def __init__(
        self, vae: VideoVAE, dit: VideoDiT, text_encoder: TextEncoder, cfg: PipelineConfig
    ):
        self.vae, self.dit, self.text_encoder, self.cfg = vae.eval(), dit.eval(), text_encoder, cfg

    @classmethod
    def load(cls, path: str | Path | None = None) -> Pipeline:
        """Load a pipeline directory (default: the shipped shapes model)."""
        d = Path(path) if path else SHIPPED_MODEL
        if not d.is_dir():
            raise FileNotFoundError(f"model directory {d} does not exist")
        if not (d / "pipeline.yaml").is_file():
            hint = " (the shipped model is missing: reinstall nanosora)" if path is None else ""
            raise FileNotFoundError(
                f"{d} is not a nanosora pipeline: pipeline.yaml is missing{hint}"
            )
        cfg = from_dict(PipelineConfig, yaml.safe_load((d / "pipeline.yaml").read_text()))
        vae = _load_module(d / "vae", VAEConfig, VideoVAE)
        dit = _load_module(d / "transformer", DiTConfig, VideoDiT)
        return cls(vae, dit, load_text_encoder(cfg.text), cfg)

    def save(self, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
        """Write the pipeline directory; weights stored in ``dtype`` (fp16 halves the size)."""
        d = Path(path)
        for name, module in (("vae", self.vae), ("transformer", self.dit)):
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

    @torch.no_grad()
    def generate(
        self,
        prompts: list[str],
        seed: int = 0,
        steps: int | None = None,
        cfg_scale: float | None = None,
        num_frames: int | None = None,
        seeds: list[int] | None = None,
        cfg_interval: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Prompts -> uint8 videos (B, T, H, W, C); prompt i uses ``seeds[i]`` or ``seed + i``.

        Guidance (scale ``cfg_scale``) applies at noise levels inside ``cfg_interval``; both
        default to the pipeline's settings.
        """
        c = self.cfg
        steps, scale = steps or c.steps, c.cfg_scale if cfg_scale is None else cfg_scale
        interval = tuple(c.cfg_interval if cfg_interval is None else cfg_interval)
        guidance_active(1.0, interval)  # validates the interval before any work
        num_frames = num_frames or c.num_frames
        for p in prompts:
            check_prompt(p)
        shape = self.vae.latent_shape(num_frames, c.height, c.width)  # validates 4k+1
        seeds = list(seeds) if seeds is not None else [seed + i for i in range(len(prompts))]
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        noise = torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )
        text, mask = self.text_encoder(list(prompts) + [""])
        cond_text, cond_mask = text[:-1], mask[:-1]
        null_text, null_mask = text[-1:].expand_as(cond_text), mask[-1:].expand_as(cond_mask)
        grid = self.dit.grid(*shape[1:])
        shift = resolution_shift(c.shift, grid[0] * grid[1] * grid[2], c.base_tokens)

        def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if scale == 1.0 or not guidance_active(float(s[0]), interval):
                return self.dit(x, s, cond_text, cond_mask)
            # One batched forward for the conditional and unconditional halves.
            v = self.dit(
                torch.cat([x, x]),
                torch.cat([s, s]),
                torch.cat([cond_text, null_text]),
                torch.cat([cond_mask, null_mask]),
            )
            cond, uncond = v.chunk(2)
            return classifier_free_guidance(cond, uncond, scale)

        latents = euler_sample(velocity, noise, sample_schedule(steps, shift))
        video = self.vae.decode(latents).clamp(-1, 1)
        return ((video + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1).numpy()


def main(
    prompts: list[str],
    out: str | Path,
    model: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    cfg_scale: float | None = None,
    num_frames: int | None = None,
    batch_size: int = 8,
) -> Path:
    """Generate one video per prompt. One prompt -> ``out`` is the mp4; several -> ``out`` is a folder."""
    from nanosora.video.io import write_video

    pipe = Pipeline.load(model)
    for p in prompts:
        for w in check_prompt(p, pipe.cfg.vocabulary):
            print(f"warning: {w}")
    out = Path(out)
    paths = [out] if len(prompts) == 1 else [out / f"{i:04d}.mp4" for i in range(len(prompts))]
    t0 = time.time()
    for lo in range(0, len(prompts), batch_size):
        videos = pipe.generate(
            prompts[lo : lo + batch_size], seed + lo, steps, cfg_scale, num_frames
        )
        for path, v in zip(paths[lo : lo + batch_size], videos):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, v, fps=pipe.cfg.fps)
    print(f"wrote {len(paths)} video(s) to {out} in {time.time() - t0:.2f}s")
    return out


def replace_cfg(pipe: Pipeline, **changes: object) -> Pipeline:
    """A pipeline sharing the modules with some PipelineConfig fields changed."""
    return Pipeline(pipe.vae, pipe.dit, pipe.text_encoder, dataclasses.replace(pipe.cfg, **changes))
