"""`nanosora train distill`: a few-step transformer distilled from a pipeline by reflow.

Rectified flow's paths are straight only on average: the teacher needs ~25 steps because the
velocity field bends. Reflow (Liu et al. 2022, "Flow Straight and Fast"; InstaFlow, Liu et al.
2023) retrains the model on the teacher's own noise -> sample map, whose paths are straight by
construction, so a few Euler steps follow them. Here:

1. pairs: the teacher samples latents x0 from noise z with its deterministic sampler and its
   guidance (so the student learns the guided field and needs one forward per step, not two);
   with ``probe_filter`` the shapes probe (or, for a scenes teacher, the scenes grader) drops
   samples that miss their prompt, so the student copies the teacher's successes only. Written
   in chunks; an interrupted run resumes;
2. training: the student starts from the teacher's weights and regresses the straight velocity
   z - x0 at x_s = (1 - s) x0 + s z; a share ``grid_prob`` of the levels s come from few-step
   schedules (of shift ``grid_shift``, by default the one it is sampled with), the rest uniform;
3. export: the teacher's pipeline with the student as ``transformer_fewstep/`` and
   ``few_step_max`` set, so ``generate --steps 4`` uses it and 25 steps still use the teacher.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from nanosora.atomic import atomic_path, write_text_atomic
from nanosora.config import DistillConfig
from nanosora.diffusion.flow import (
    add_noise,
    object_weights,
    sample_schedule,
    velocity_target,
)
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import SHIPPED_MODEL, Pipeline, load_weights, replace_cfg
from nanosora.precision import bf16_autocast
from nanosora.shapes.captions import caption, parse_prompt
from nanosora.shapes.grader import grade_prompt
from nanosora.shapes.grammar import CATEGORIES
from nanosora.shapes.grammar import caption as scenes_caption
from nanosora.shapes.probe import probe_frames
from nanosora.shapes.scenes import composition_for
from nanosora.shapes.world import compositions
from nanosora.train.checkpoint import plot_metrics
from nanosora.train.loop import StepResult, batch_indices, prepare, start_run, step_generator, train
from nanosora.video.io import write_gif


def chunk_prompts(
    cfg: DistillConfig, chunk: int, lines: list[str], vocabulary: str = ""
) -> list[str]:
    """The prompts of pair chunk ``chunk``: drawn from ``lines`` or, without a prompts file,
    random captions of the world's training compositions (seeded by the chunk): the scenes
    world's, every category alike, for a ``scenes`` vocabulary, else the shapes world's."""
    rng = np.random.default_rng([cfg.train.seed, chunk])
    if lines:
        return [lines[i] for i in rng.integers(len(lines), size=cfg.pair_batch)]
    if vocabulary == "scenes":
        picks = rng.integers(len(CATEGORIES), size=cfg.pair_batch)
        comps = [composition_for(rng, CATEGORIES[i], "train") for i in picks]
        return [scenes_caption(comp, rng) for comp in comps]
    combos = compositions("train")
    picks = rng.integers(len(combos), size=cfg.pair_batch)
    return [caption(*combos[i], rng) for i in picks]


def matches(frames: np.ndarray, prompt: str, vocabulary: str) -> bool:
    """Whether uint8 (T, H, W, 3) frames show ``prompt``: the scenes grader's verdict for a
    ``scenes`` vocabulary, else the colour, shape and direction the shapes probe reads back."""
    if vocabulary == "scenes":
        return grade_prompt(frames, prompt).passed
    reading = probe_frames(frames)
    return (reading.color, reading.shape, reading.direction) == parse_prompt(prompt)


def pad_text(text: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, ...]:
    """Pad (B, L, E) features and (B, L) mask to ``length`` tokens (masked padding does not
    change the DiT's output), so chunks with different longest prompts stack."""
    extra = length - text.shape[1]
    text = torch.nn.functional.pad(text, (0, 0, 0, extra))
    return text, torch.nn.functional.pad(mask, (0, extra), value=False)


def make_pairs(pipe: Pipeline, cfg: DistillConfig, out: Path) -> None:
    """Teacher samples in chunks ``out/pairs_NNNNN.safetensors`` (noise, latents, text, mask,
    keep) with their prompts in a ``.json`` beside; chunks already written are kept."""
    lines = []
    if cfg.prompts:
        lines = [ln.strip() for ln in Path(cfg.prompts).read_text().splitlines() if ln.strip()]
        if not lines:
            raise ValueError(f"{cfg.prompts} has no prompts")
    out.mkdir(parents=True, exist_ok=True)
    chunks = -(-cfg.pairs // cfg.pair_batch)
    shape = pipe.vae.latent_shape(pipe.cfg.num_frames, pipe.cfg.height, pipe.cfg.width)
    vocabulary = pipe.cfg.vocabulary
    filtered = cfg.probe_filter and vocabulary in ("shapes", "scenes")
    for chunk in range(chunks):
        path = out / f"pairs_{chunk:05d}.safetensors"
        if path.exists():
            continue
        prompts = chunk_prompts(cfg, chunk, lines, vocabulary)
        seeds = [
            cfg.train.seed * 10_000_019 + chunk * cfg.pair_batch + i for i in range(len(prompts))
        ]
        noise = torch.stack(
            [torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds]
        )
        latents = pipe.sample_latents(
            prompts, seeds=seeds, steps=cfg.teacher_steps, eta=cfg.teacher_eta
        )
        keep = torch.ones(len(prompts), dtype=torch.bool)
        if filtered:
            videos = pipe.decode_latents(latents)
            keep = torch.tensor([matches(v, p, vocabulary) for v, p in zip(videos, prompts)])
        text, mask = pad_text(*pipe.text_encoder(prompts), pipe.text_encoder.max_length)
        tensors = {
            "noise": noise,
            "latents": latents,
            "text": text.half(),
            "mask": mask,
            "keep": keep,
        }
        write_text_atomic(path.with_suffix(".json"), json.dumps(prompts))
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        print(f"pairs {chunk + 1}/{chunks}: kept {int(keep.sum())}/{len(keep)}", flush=True)


def load_pairs(out: Path) -> dict[str, torch.Tensor]:
    """Every chunk's kept pairs, concatenated."""
    parts = [load_file(str(p)) for p in sorted(out.glob("pairs_*.safetensors"))]
    if not parts:
        raise FileNotFoundError(f"no teacher pairs in {out}")
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    keep = cat.pop("keep")
    return {k: v[keep] for k, v in cat.items()}


def few_step_levels(pipe: Pipeline, steps: tuple[int, ...]) -> torch.Tensor:
    """Every noise level (but the final 0) that the few-step transformer of ``pipe`` visits
    when sampling at ``steps`` steps."""
    c = pipe.cfg
    shift = pipe.sampling_shift(pipe.vae.latent_shape(c.num_frames, c.height, c.width), True)
    return torch.cat([sample_schedule(n, shift)[:-1] for n in steps]).unique()


def reflow_loss(
    student: torch.nn.Module,
    pairs: dict[str, torch.Tensor],
    indices: list[int],
    levels: torch.Tensor,
    grid_prob: float,
    bf16: bool,
    generator: torch.Generator,
    object_weight: float = 0.0,
) -> torch.Tensor:
    """Velocity MSE on the straight path between each pair's noise and its teacher latents
    (object cells weighted 1 + ``object_weight``, flow.object_weights)."""
    z, x0 = pairs["noise"][indices], pairs["latents"][indices]
    text, mask = pairs["text"][indices].float(), pairs["mask"][indices]
    n = len(indices)
    uniform = torch.rand(n, generator=generator)
    on_grid = levels[torch.randint(len(levels), (n,), generator=generator)]
    s = torch.where(torch.rand(n, generator=generator) < grid_prob, on_grid, uniform)
    with bf16_autocast("cpu", bf16):
        pred = student(add_noise(x0, z, s), s, text, mask)
    err = (pred.float() - velocity_target(x0, z)).pow(2)
    if object_weight:
        err = err * object_weights(x0, object_weight)
    return err.mean()


def with_student(
    teacher: Pipeline, student: VideoDiT, few_steps: tuple[int, ...], shift: float = 0.0
) -> Pipeline:
    """The teacher's pipeline with ``student`` as its few-step transformer, sampled with
    ``shift`` (0: the teacher's)."""
    fast = Pipeline(teacher.vae, teacher.dit, teacher.text_encoder, teacher.cfg, student)
    return replace_cfg(fast, few_step_max=max(few_steps), few_step_shift=shift)


def write_samples(pipe: Pipeline, cfg: DistillConfig, path: Path) -> None:
    """GIF grid: one row per sample prompt, one column block per few-step count."""
    rows = [
        np.concatenate(list(pipe.generate(list(cfg.sample_prompts), seed=0, steps=n)), axis=1)
        for n in sorted(cfg.few_steps)
    ]
    write_gif(path, np.concatenate(rows, axis=2), fps=pipe.cfg.fps)


def main(cfg: DistillConfig, resume: bool = False) -> Path:
    """Draw the teacher's pairs, train the student, export ``RUN/pipeline``."""
    d, run = start_run(cfg, cfg.train, resume)
    if d.world_size > 1:
        raise ValueError("distillation runs in one process")
    teacher = Pipeline.load(cfg.teacher or None)
    # The pairs come from the teacher's main transformer, whatever few-step one it carries.
    make_pairs(replace_cfg(teacher, few_step_max=0), cfg, run.path / "pairs")
    pairs = load_pairs(run.path / "pairs")
    print(f"{len(pairs['noise'])} teacher pairs kept", flush=True)
    student = VideoDiT(teacher.dit.cfg)
    student.load_state_dict(teacher.dit.state_dict())
    w, state = prepare(student, cfg.optim, cfg.train, d, run, resume)
    grid = replace_cfg(teacher, few_step_shift=cfg.grid_shift or cfg.few_step_shift)
    levels = few_step_levels(grid, cfg.few_steps)
    t = cfg.train

    def gradients(step: int) -> StepResult:
        w.opt.zero_grad(set_to_none=True)
        indices = batch_indices(len(pairs["noise"]), t.batch_size, step, t.seed)
        gen = step_generator(t.seed, step)
        loss = reflow_loss(
            w.forward, pairs, indices, levels, cfg.grid_prob, t.bf16, gen, cfg.object_weight
        )
        return StepResult(loss, loss.item(), [], "reflow")

    def sample(step: int) -> None:
        if w.ema is not None:
            snapshot = VideoDiT(teacher.dit.cfg)
            snapshot.load_state_dict(w.ema.state_dict())
            pipe = with_student(teacher, snapshot, cfg.few_steps, cfg.few_step_shift)
            write_samples(pipe, cfg, run.path / "samples" / f"step{step:06d}.gif")

    if not train(
        w, run, state, t, cfg.optim, d, gradients,
        log_fields=lambda result, losses: {"loss": float(np.mean(losses))},
        name="distill", plots=("loss", "grad_norm"), hooks=((t.sample_every, sample),),
    ):  # fmt: skip
        return run.path  # paused at train.stop_at
    final = VideoDiT(teacher.dit.cfg)
    final.load_state_dict(load_weights(run.path))
    pipe = with_student(teacher, final, cfg.few_steps, cfg.few_step_shift)
    out = run.path / "pipeline"
    if out.exists():
        shutil.rmtree(out)
    pipe.save(out)
    card = (cfg.teacher and Path(cfg.teacher) or SHIPPED_MODEL) / "MODEL_CARD.md"
    if card.exists():
        shutil.copy(card, out / "MODEL_CARD.md")
    write_samples(pipe, cfg, run.path / "samples" / "final.gif")
    plot_metrics(run, ("loss", "grad_norm"))
    return run.path
