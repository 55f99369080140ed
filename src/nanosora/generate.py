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
    frame_timesteps,
    guidance_active,
    resolution_shift,
    sample_schedule,
    stochastic_sample,
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
    def load(cls, path: str | Path | None = None, lora: str | Path | None = None) -> Pipeline:
        """Load a pipeline directory (default: the shipped shapes model); ``lora``: a LoRA
        adapter directory (``RUN/lora``) merged into the transformer."""
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
        if lora is not None:
            from nanosora.train.lora import load_adapter, merge_lora

            merged = merge_lora(load_adapter(dit, lora))  # injects into dit, then folds in
            dit = VideoDiT(dit.cfg)
            dit.load_state_dict(merged)
            cfg = dataclasses.replace(cfg, vocabulary="")  # the adapter may know new words
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
        prefix: np.ndarray | None = None,
        eta: float | None = None,
    ) -> np.ndarray:
        """Prompts -> uint8 videos (B, T, H, W, C); prompt i uses ``seeds[i]`` or ``seed + i``.

        Guidance (scale ``cfg_scale``) applies at noise levels inside ``cfg_interval``; ``eta`` is
        the share of noise renewed at each step (0: the deterministic Euler sampler; see
        ``stochastic_sample``). All three default to the pipeline's settings. A prompt's fresh
        noise comes from its own seed's generator, after its starting noise.

        ``prefix``: uint8 frames (K, H, W, C) or (B, K, H, W, C) at the pipeline's size that
        every video starts with, K = 4j+1: K = 1 is image-to-video, more is extension. They are
        encoded to j+1 latent frames that stay clean (noise level 0) while the rest is sampled;
        the model must have been trained with frame masks (``flow.cond_prob`` > 0).
        """
        c = self.cfg
        steps, scale = steps or c.steps, c.cfg_scale if cfg_scale is None else cfg_scale
        interval = tuple(c.cfg_interval if cfg_interval is None else cfg_interval)
        guidance_active(1.0, interval)  # validates the interval before any work
        eta = c.eta if eta is None else eta
        num_frames = num_frames or c.num_frames
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
            cond = self.encode_prefix(prefix, len(prompts), num_frames)
            given = cond.shape[2]
            noise[:, :, :given] = cond
        text, mask = self.text_encoder(list(prompts) + [""])
        cond_text, cond_mask = text[:-1], mask[:-1]
        null_text, null_mask = text[-1:].expand_as(cond_text), mask[-1:].expand_as(cond_mask)
        grid = self.dit.grid(*shape[1:])
        shift = resolution_shift(c.shift, grid[0] * grid[1] * grid[2], c.base_tokens)

        def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if given:  # the given frames sit at level 0 and do not move
                s = frame_timesteps(s, torch.full_like(s, given, dtype=torch.long), x.shape[2])
                return velocity_of_levels(x, s).index_fill(2, torch.arange(given), 0.0)
            return velocity_of_levels(x, s)

        def velocity_of_levels(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            if scale == 1.0 or not guidance_active(float(s.max()), interval):
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

        keep = (torch.arange(shape[1]) < given).view(1, 1, -1, 1, 1) if given else None
        # eta = 0 is the Euler step bit for bit; stochastic_sample validates eta
        schedule = sample_schedule(steps, shift)
        latents = stochastic_sample(velocity, noise, schedule, eta, generators, keep)
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
    ) -> np.ndarray:
        """Continue ``video`` (T, H, W, 3) uint8 by ``extra`` frames, window by window: each
        window is given up to half a clip of the latest frames and generates the rest."""
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
            )[0]
            out = np.concatenate([out, clip[context:]])
            window += 1
        return out[: len(video) + extra]


def prepare_frames(frames: np.ndarray, height: int, width: int, name: str) -> np.ndarray:
    """Image(s) of any common layout -> uint8 RGB (K, height, width, 3), with printed notices.

    Accepts (H, W), (H, W, C) or (K, H, W, C) with C in 1, 3, 4 (alpha is dropped); other sizes
    are resized with area interpolation. ``name`` is used in messages.
    """
    import cv2

    a = np.asarray(frames)
    if a.dtype != np.uint8:
        raise ValueError(f"{name}: expected 8-bit pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected (H, W[, C]) or (K, H, W, C) pixels, got {a.shape}")
    if a.shape[-1] == 1:
        print(f"notice: {name} is greyscale; converted to RGB")
        a = np.repeat(a, 3, axis=-1)
    elif a.shape[-1] == 4:
        print(f"notice: {name} has an alpha channel; dropped")
        a = a[..., :3]
    if a.shape[1:3] != (height, width):
        print(f"notice: {name} is {a.shape[2]}x{a.shape[1]}; resized to {width}x{height}")
        a = np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in a])
    return np.ascontiguousarray(a)


def read_image(path: str | Path) -> np.ndarray:
    """An image file -> uint8 (H, W, C) RGB(A) or (H, W) grey; a clear error when unreadable."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} does not exist")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{p} is not a readable image (corrupt or unsupported format)")
    if img.dtype == np.uint16:
        print(f"notice: {p} has 16-bit pixels; scaled to 8 bits")
        img = (img // 257).astype(np.uint8)
    if img.ndim == 3 and img.shape[-1] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[-1] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return img


def main(
    prompts: list[str],
    out: str | Path,
    model: str | Path | None = None,
    seed: int = 0,
    steps: int | None = None,
    cfg_scale: float | None = None,
    num_frames: int | None = None,
    batch_size: int = 8,
    image: str | Path | None = None,
    video: str | Path | None = None,
    extend: int = 0,
    lora: str | Path | None = None,
    eta: float | None = None,
) -> Path:
    """Generate one video per prompt. One prompt -> ``out`` is the mp4; several -> ``out`` is a folder.

    ``image``: animate that first frame (image-to-video); ``video`` + ``extend``: continue the
    clip by ``extend`` frames (the written video is the clip followed by the new frames).
    """
    from nanosora.video.io import read_video, write_video

    pipe = replace_cfg(Pipeline.load(model, lora), eta=eta)
    c = pipe.cfg
    for p in prompts:
        for w in check_prompt(p, c.vocabulary):
            print(f"warning: {w}")
    prefix = None
    if image is not None:
        prefix = prepare_frames(read_image(image), c.height, c.width, str(image))
    out = Path(out)
    paths = [out] if len(prompts) == 1 else [out / f"{i:04d}.mp4" for i in range(len(prompts))]
    t0 = time.time()
    if video is not None:
        clip = prepare_frames(read_video(video, fps=c.fps), c.height, c.width, str(video))
        for i, (path, p) in enumerate(zip(paths, prompts)):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, pipe.extend(p, clip, extend, seed + i, steps, cfg_scale), fps=c.fps)
        print(f"wrote {len(paths)} video(s) to {out} in {time.time() - t0:.2f}s")
        return out
    for lo in range(0, len(prompts), batch_size):
        videos = pipe.generate(
            prompts[lo : lo + batch_size], seed + lo, steps, cfg_scale, num_frames, prefix=prefix
        )
        for path, v in zip(paths[lo : lo + batch_size], videos):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_video(path, v, fps=pipe.cfg.fps)
    print(f"wrote {len(paths)} video(s) to {out} in {time.time() - t0:.2f}s")
    return out


def replace_cfg(pipe: Pipeline, **changes: object) -> Pipeline:
    """A pipeline sharing the modules with some PipelineConfig fields changed (validated like
    pipeline.yaml); a change given as None keeps the pipeline's value (an unset CLI option)."""
    given = {k: v for k, v in changes.items() if v is not None}
    return Pipeline(pipe.vae, pipe.dit, pipe.text_encoder, dataclasses.replace(pipe.cfg, **given))
