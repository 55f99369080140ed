"""`nanosora train dpo`: a scenes pipeline fine-tuned on its own graded samples.

The scenes world has an exact grader, so preferences cost no people: Diffusion-DPO (Wallace et
al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization") with the grader as
the judge, on rectified flow:

1. candidates: the pipeline samples ``samples_per_prompt`` clips for each of ``prompts`` captions
   of training compositions (never a held-out composition or phrasing), as it samples for the
   benchmark (its guidance and sampler); the grader judges each. A prompt with a passing and a
   failing clip gives pairs (winner, loser), every failing clip paired with a passing one; with
   ``data_winners``, a prompt whose every clip fails pairs them with a ground-truth clip of its
   composition (rendered and encoded by the pipeline's VAE). Written in chunks; a run resumes;
2. training: the policy starts from the pipeline's transformer, which stays frozen as the
   reference. For a pair at a shared noise level s and noise z, with e the velocity MSE,
   ``loss = -log sigmoid(-beta * ((e_w - e_w_ref) - (e_l - e_l_ref)))``: the policy lowers its
   error on the winner and raises it on the loser relative to the reference, which keeps it
   near what it knew;
3. export: the pipeline with the policy as its transformer (``RUN/pipeline``), benchmarked like
   any other (`nanosora bench-scenes`).
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from nanosora.atomic import atomic_path, write_text_atomic
from nanosora.config import PreferenceConfig
from nanosora.data.datasets import frames_to_tensor
from nanosora.diffusion.flow import add_noise, sample_timesteps, velocity_target
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import Pipeline, load_weights, replace_cfg
from nanosora.precision import bf16_autocast
from nanosora.shapes.grader import grade_prompt
from nanosora.shapes.grammar import CATEGORIES, caption, parse
from nanosora.shapes.scenes import composition_for, truth_clip
from nanosora.train.checkpoint import plot_metrics
from nanosora.train.distill import pad_text
from nanosora.train.loop import StepResult, batch_indices, prepare, start_run, step_generator, train
from nanosora.video.io import write_gif


def chunk_prompts(cfg: PreferenceConfig, chunk: int) -> list[str]:
    """Chunk ``chunk``'s prompts: training captions of training compositions, the categories
    drawn alike (seeded by the chunk, so a resumed run draws the same)."""
    categories = cfg.categories or CATEGORIES
    unknown = sorted(set(categories) - set(CATEGORIES))
    if unknown:
        raise ValueError(f"categories: {unknown} are not scenes categories {CATEGORIES}")
    rng = np.random.default_rng([cfg.train.seed, 7, chunk])
    size = min(cfg.prompt_batch, cfg.prompts - chunk * cfg.prompt_batch)
    picks = rng.integers(len(categories), size=size)
    return [caption(composition_for(rng, categories[i], "train"), rng) for i in picks]  # type: ignore[arg-type]


def truth_clips(prompts: list[str], seed: int) -> np.ndarray:
    """A clip of each prompt's composition drawn by the world itself: uint8 (B, T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    return np.stack([truth_clip(prompt, rng) for prompt in prompts])


def ground_truth(pipe: Pipeline, prompts: list[str], seed: int) -> torch.Tensor:
    """`truth_clips` encoded by the pipeline's VAE -> (B, c, t, h, w) normalised latents."""
    x = torch.stack([frames_to_tensor(clip) for clip in truth_clips(prompts, seed)])
    with torch.no_grad():
        return pipe.vae.encode(x)


def pair_up(passed: list[list[bool]], data_winners: bool) -> list[tuple[int, int, int]]:
    """Pairs ``(prompt, winner, loser)`` from each prompt's verdicts: every failing clip against
    a passing one (in turn); winner -1 is the ground-truth clip, used when none passes and
    ``data_winners``. A prompt whose clips all pass gives nothing."""
    pairs = []
    for p, verdicts in enumerate(passed):
        wins = [k for k, ok in enumerate(verdicts) if ok]
        losses = [k for k, ok in enumerate(verdicts) if not ok]
        if not wins and data_winners:
            wins = [-1]
        if wins:
            pairs += [(p, wins[i % len(wins)], k) for i, k in enumerate(losses)]
    return pairs


def make_pairs(pipe: Pipeline, cfg: PreferenceConfig, out: Path) -> None:
    """Sample, grade and pair in chunks ``out/pairs_NNNNN.safetensors`` (winners, losers, text,
    mask), each with a ``.json`` of its prompts, verdicts and pairs; chunks written are kept."""
    out.mkdir(parents=True, exist_ok=True)
    chunks = -(-cfg.prompts // cfg.prompt_batch)
    k = cfg.samples_per_prompt
    for chunk in range(chunks):
        path = out / f"pairs_{chunk:05d}.safetensors"
        if path.exists():
            continue
        prompts = chunk_prompts(cfg, chunk)
        repeated = [p for p in prompts for _ in range(k)]
        first = (cfg.train.seed * 1_000_003 + chunk) * len(repeated)
        latents = pipe.sample_latents(
            repeated, seeds=list(range(first, first + len(repeated))), steps=cfg.sample_steps
        )
        videos = pipe.decode_latents(latents)
        verdicts = [grade_prompt(v, p) for v, p in zip(videos, repeated)]
        passed = [[v.passed for v in verdicts[i * k : (i + 1) * k]] for i in range(len(prompts))]
        pairs = pair_up(passed, cfg.data_winners)
        shape = (0, *latents.shape[1:])
        winners, losers = latents.new_zeros(shape), latents.new_zeros(shape)
        text, mask = pad_text(*pipe.text_encoder(prompts), pipe.text_encoder.max_length)
        if pairs:
            truth = ground_truth(pipe, prompts, first) if any(w < 0 for _, w, _ in pairs) else None
            winners = torch.stack(
                [truth[p] if w < 0 else latents[p * k + w] for p, w, _ in pairs]  # type: ignore[index]
            )
            losers = torch.stack([latents[p * k + lose] for p, _, lose in pairs])
        rows = [p for p, _, _ in pairs]
        text, mask = text[rows], mask[rows]
        record = {
            "prompts": prompts,
            "categories": [parse(p)[0].category for p in prompts],
            "passed": passed,
            "reasons": [v.reason for v in verdicts],
            "pairs": pairs,
        }
        write_text_atomic(path.with_suffix(".json"), json.dumps(record))
        tensors = {"winners": winners, "losers": losers, "text": text.half(), "mask": mask}
        with atomic_path(path) as tmp:
            save_file({n: v.contiguous() for n, v in tensors.items()}, str(tmp))
        data = sum(w < 0 for _, w, _ in pairs)
        print(
            f"pairs {chunk + 1}/{chunks}: {sum(map(sum, passed))}/{len(repeated)} clips passed, "
            f"{len(pairs)} pairs ({data} with a ground-truth winner)",
            flush=True,
        )


def load_pairs(out: Path) -> dict[str, torch.Tensor]:
    """Every chunk's pairs, concatenated."""
    parts = [load_file(str(p)) for p in sorted(out.glob("pairs_*.safetensors"))]
    if not parts:
        raise FileNotFoundError(f"no pairs in {out}")
    return {n: torch.cat([p[n] for p in parts]) for n in parts[0]}


def pass_rates(out: Path) -> dict[str, dict[str, float]]:
    """The sampled clips' pass rate per category (the starting model on training prompts)."""
    seen: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for path in sorted(out.glob("pairs_*.json")):
        record = json.loads(path.read_text())
        for category, verdicts in zip(record["categories"], record["passed"]):
            seen[category] += len(verdicts)
            good[category] += sum(verdicts)
    return {c: {"clips": seen[c], "passed": good[c] / seen[c]} for c in seen}


def dpo_loss(
    policy: torch.nn.Module,
    reference: torch.nn.Module,
    pairs: dict[str, torch.Tensor],
    indices: list[int],
    cfg: PreferenceConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The DPO loss of pairs ``indices`` (module docstring), and its parts for the log."""
    winners, losers = pairs["winners"][indices], pairs["losers"][indices]
    text, mask = pairs["text"][indices].float(), pairs["mask"][indices]
    n = len(indices)
    s = sample_timesteps(n, shift=cfg.level_shift, generator=generator).repeat(2)
    noise = torch.randn(winners.shape, generator=generator).repeat(2, 1, 1, 1, 1)
    x0 = torch.cat([winners, losers])
    text, mask = text.repeat(2, 1, 1), mask.repeat(2, 1)
    x_s, target = add_noise(x0, noise, s), velocity_target(x0, noise)
    bf16 = cfg.train.bf16
    with bf16_autocast("cpu", bf16):
        pred = policy(x_s, s, text, mask)
    err = (pred.float() - target).pow(2).mean(dim=(1, 2, 3, 4))
    with torch.no_grad(), bf16_autocast("cpu", bf16):
        ref_err = (reference(x_s, s, text, mask).float() - target).pow(2).mean(dim=(1, 2, 3, 4))
    gain = err - ref_err  # < 0 where the policy fits a clip better than the reference
    margin = gain[:n] - gain[n:]
    dpo = -F.logsigmoid(-cfg.beta * margin).mean()
    loss = dpo + cfg.sft_weight * err[:n].mean() if cfg.sft_weight else dpo
    parts = {
        "dpo": dpo.item(),
        "reward_acc": (margin < 0).float().mean().item(),
        "winner_gain": gain[:n].mean().item(),
        "loser_gain": gain[n:].mean().item(),
    }
    return loss, parts


def with_policy(reference: Pipeline, policy: VideoDiT) -> Pipeline:
    """The reference pipeline (loaded without its few-step transformer, which a tuned
    transformer no longer matches) with ``policy`` as its transformer."""
    return Pipeline(reference.vae, policy, reference.text_encoder, reference.cfg)


def write_samples(pipe: Pipeline, cfg: PreferenceConfig, path: Path) -> None:
    """GIF: the sample prompts side by side."""
    frames = pipe.generate(list(cfg.sample_prompts), seed=0)
    write_gif(path, np.concatenate(list(frames), axis=2), fps=pipe.cfg.fps)


def main(cfg: PreferenceConfig, resume: bool = False) -> Path:
    """Sample and grade the pairs, fine-tune the policy, export ``RUN/pipeline``."""
    if not cfg.model:
        raise ValueError("model: give the scenes pipeline directory to fine-tune")
    d, run = start_run(cfg, cfg.train, resume)
    if d.world_size > 1:
        raise ValueError("preference fine-tuning runs in one process")
    reference = replace_cfg(Pipeline.load(cfg.model), few_step_max=0)
    if reference.cfg.vocabulary != "scenes":
        raise ValueError(
            f"{cfg.model}: preference fine-tuning needs a scenes pipeline (its grader judges the "
            f"clips); this one's vocabulary is {reference.cfg.vocabulary!r}"
        )
    make_pairs(reference, cfg, run.path / "pairs")
    rates = pass_rates(run.path / "pairs")
    write_text_atomic(run.path / "pairs" / "pass_rates.json", json.dumps(rates, indent=1))
    pairs = load_pairs(run.path / "pairs")
    if not len(pairs["winners"]):
        raise ValueError(f"no pairs in {run.path / 'pairs'}: every sampled clip passed")
    print(f"{len(pairs['winners'])} pairs", flush=True)
    ref_dit = reference.dit.eval().requires_grad_(False)
    policy = VideoDiT(ref_dit.cfg)
    policy.load_state_dict(ref_dit.state_dict())
    w, state = prepare(policy, cfg.optim, cfg.train, d, run, resume)
    t = cfg.train

    def gradients(step: int) -> StepResult:
        w.opt.zero_grad(set_to_none=True)
        indices = batch_indices(len(pairs["winners"]), t.batch_size, step, t.seed)
        loss, parts = dpo_loss(w.forward, ref_dit, pairs, indices, cfg, step_generator(t.seed, step))  # fmt: skip
        return StepResult(loss, loss.item(), [parts], "dpo")

    def log_fields(result: StepResult, losses: list[float]) -> dict[str, float]:
        return {"loss": float(np.mean(losses)), **result.parts[0]}

    def sample(step: int) -> None:
        snapshot = VideoDiT(ref_dit.cfg)
        snapshot.load_state_dict((w.ema or w.model).state_dict())
        write_samples(with_policy(reference, snapshot), cfg, run.path / "samples" / f"step{step:06d}.gif")  # fmt: skip

    plots = ("loss", "reward_acc", "grad_norm")
    if not train(
        w, run, state, t, cfg.optim, d, gradients, log_fields=log_fields, name="dpo",
        plots=plots, hooks=((t.sample_every, sample),),
    ):  # fmt: skip
        return run.path  # paused at train.stop_at
    final = VideoDiT(ref_dit.cfg)
    final.load_state_dict(load_weights(run.path))
    pipe = with_policy(reference, final)
    out = run.path / "pipeline"
    if out.exists():
        shutil.rmtree(out)
    pipe.save(out)
    write_samples(pipe, cfg, run.path / "samples" / "final.gif")
    plot_metrics(run, plots)
    return run.path
