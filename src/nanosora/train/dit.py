"""`nanosora train dit`: rectified-flow training of the video DiT from a latent + text cache.

One step (numbered as in the code):
1. a batch of cached posteriors is sampled into normalised latents x0 (B, c, t, h, w), with text
   features (B, L, E); a share ``flow.text_dropout`` of rows get the null prompt (for CFG);
   with probability ``flow.image_prob`` it is an image batch (``flow.image_batch`` clips' first
   latent frames);
2. timesteps s ~ logit-normal, shifted toward noise by ``flow.train_shift``;
3. x_s = (1 - s) x0 + s noise, target v = noise - x0;
4. loss = mean squared error of the DiT's velocity (plus, with ``flow.ground_weight``, the
   grounding loss on the cross-attention: data/grounding.py); AdamW, warmup + cosine, clipping,
   EMA.

Pretraining, full fine-tuning (``init_from``) and LoRA (``lora.rank`` > 0, adapters on the
frozen ``init_from`` model) are the same loop by config (train/loop.py). Resumption is exact
(data order and noise derive from (seed, step)).
"""

from __future__ import annotations

import collections
import functools
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nanosora.atomic import atomic_path
from nanosora.config import (
    DiTTrainConfig,
    PipelineConfig,
    TextEncoderConfig,
    from_dict,
    load_config,
    to_dict,
)
from nanosora.data.buckets import TokenBudgetBatchSampler
from nanosora.data.cache import LatentCache
from nanosora.data.grounding import GroundingTargets, grounding_loss, token_targets
from nanosora.diffusion.flow import (
    add_noise,
    frame_timesteps,
    object_weights,
    sample_condition_frames,
    sample_timesteps,
    velocity_target,
)
from nanosora.lora import apply_lora, merge_lora, save_adapter
from nanosora.models.dit import VideoDiT
from nanosora.models.text_encoder import load_text_encoder
from nanosora.pipeline import Pipeline, load_vae, load_weights
from nanosora.precision import bf16_autocast
from nanosora.train.checkpoint import RunDir, load_weights_into, plot_metrics
from nanosora.train.distributed import (
    Dist,
    finish,
    full_tensor,
    log,
    micro_batches,
    no_sync,
)
from nanosora.train.loop import (
    StepResult,
    Trainee,
    accumulate,
    batch_indices,
    part_means,
    prepare,
    start_run,
    step_generator,
    train,
    weighted_batch_indices,
)
from nanosora.video.io import write_gif


def flow_loss(
    dit: torch.nn.Module,
    x0: torch.Tensor,
    text: torch.Tensor,
    mask: torch.Tensor,
    cfg: DiTTrainConfig,
    generator: torch.Generator,
    rows: slice = slice(None),
    ground: torch.Tensor | None = None,
    terms: dict[str, float] | None = None,
) -> torch.Tensor:
    """Rectified-flow velocity MSE for one batch (steps 2-4 of the module docstring).

    Only ``rows`` of the batch are computed (this rank's or micro-batch's share), on the model's
    device; the noise is drawn for the whole batch first, so the shares add up to one process.
    ``ground``: the whole batch's (B, N, L) grounding targets (``token_targets``; rows whose text
    was dropped all False), which add ``flow.ground_weight`` x the grounding loss averaged over
    the batch's grounded words. ``terms`` receives the loss's parts for the log.
    """
    f = cfg.flow
    s = sample_timesteps(len(x0), f.logit_mean, f.logit_std, f.train_shift, generator=generator)
    device = next(dit.parameters()).device
    noise = draw_noise(x0.shape, generator, device)
    probs: list[torch.Tensor] | None = [] if ground is not None else None
    collect = {"cross_probs": probs} if probs is not None else {}  # stand-in models take none
    if f.cond_prob <= 0:
        x0, noise, s, text, mask = (a[rows].to(device) for a in (x0, noise, s, text, mask))
        with bf16_autocast(device.type, cfg.train.bf16):
            pred = dit(add_noise(x0, noise, s), s, text, mask, **collect)
        err = (pred.float() - velocity_target(x0, noise)).pow(2)
        if f.object_weight:
            err = err * object_weights(x0, f.object_weight)
        return with_grounding(err.mean(), probs, ground, rows, f.ground_weight, terms)
    # Frame masks: leading frames given clean (level 0) and left out of the loss. Drawn for the
    # whole batch, like the noise, and normalised by the whole batch's count of noised frames
    # (times the share's size), so shares averaged across ranks equal one process's loss.
    batch, frames = len(x0), x0.shape[2]
    k = sample_condition_frames(batch, frames, f.cond_prob, generator)
    noised = (torch.arange(frames)[None] >= k[:, None]).float()
    scale = batch / noised.sum().clamp_min(1.0)
    s_frames = frame_timesteps(s, k, frames)
    x0, noise, s_frames, text, mask, noised = (
        a[rows].to(device) for a in (x0, noise, s_frames, text, mask, noised)
    )
    with bf16_autocast(device.type, cfg.train.bf16):
        pred = dit(add_noise(x0, noise, s_frames), s_frames, text, mask, **collect)
    err = (pred.float() - velocity_target(x0, noise)).pow(2)
    if f.object_weight:
        err = err * object_weights(x0, f.object_weight)
    err = err.mean(dim=(1, 3, 4))  # (b, t)
    loss = (err * noised).sum() / len(x0) * scale.to(device)
    return with_grounding(loss, probs, ground, rows, f.ground_weight, terms)


def with_grounding(
    loss: torch.Tensor,
    probs: list[torch.Tensor] | None,
    ground: torch.Tensor | None,
    rows: slice,
    weight: float,
    terms: dict[str, float] | None,
) -> torch.Tensor:
    """``loss`` plus ``weight`` x the grounding loss of the blocks' mean cross-attention on
    ``rows`` of the batch, normalised like the frame-masked loss: per grounded word of the whole
    batch, times the batch over the share, so shares averaged across ranks equal one process."""
    if terms is not None:
        terms["flow"] = loss.item()
    if ground is None or probs is None:
        return loss
    mean_probs = torch.stack(probs).mean(0)  # (b, N, L') over the blocks
    share = ground[rows][:, :, : mean_probs.shape[-1]].to(mean_probs.device)
    per_row, _ = grounding_loss(mean_probs, share)
    total_words = ground.any(1).sum().clamp_min(1)
    term = per_row.sum() / total_words * (len(ground) / len(share))
    if terms is not None:
        terms["ground"] = term.item()
    return loss + weight * term


def draw_noise(shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """The whole batch's Gaussian noise: from ``generator`` on the CPU; on an accelerator, drawn
    there from a generator seeded by it (a 256-clip scenes batch costs the host ~25 ms, a sixth
    of a GPU step). Every rank draws the same noise either way."""
    if device.type == "cpu":
        return torch.randn(shape, generator=generator)
    seed = int(torch.randint(2**62, (1,), generator=generator))
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)


def build_pipeline(dit: VideoDiT, cfg: DiTTrainConfig, cache: LatentCache) -> Pipeline:
    """A generation pipeline around ``dit`` with the cache's VAE (for samples and export)."""
    vae = load_vae(cfg.vae or cache.meta["vae"])
    m = cache.meta
    pcfg = PipelineConfig(
        text=cfg.text,
        steps=cfg.flow.steps,
        cfg_scale=cfg.flow.cfg_scale,
        cfg_interval=cfg.flow.cfg_interval,
        eta=cfg.flow.eta,
        shift=cfg.flow.sample_shift,
        base_tokens=int(np.prod(dit.grid(*cache.latent_shape[1:]))),
        num_frames=m["num_frames"],
        height=m["height"],
        width=m["width"],
        fps=m["fps"],
        vocabulary=vocabulary_of(m["manifest"]),
    )
    return Pipeline(vae, dit, load_text_encoder(cfg.text), pcfg)


def vocabulary_of(manifest: str) -> str:
    """The pipeline's vocabulary from its training clips' sources: "shapes" for the one-object
    world alone, "scenes" for the scenes world (with or without one-object clips), else ""."""
    try:
        sources = set(pd.read_parquet(manifest, columns=["source"])["source"].unique())
    except Exception:  # noqa: BLE001 - any unreadable manifest just means "not a known world"
        return ""
    if sources == {"shapes"}:
        return "shapes"
    return "scenes" if "scenes" in sources and sources <= {"scenes", "shapes"} else ""


def write_samples(dit: VideoDiT, cfg: DiTTrainConfig, cache: LatentCache, path: Path) -> None:
    """GIF grid of the sample prompts (one row each) from the given weights."""
    pipe = build_pipeline(dit, cfg, cache)
    videos = pipe.generate(list(cfg.sample_prompts), seed=0)
    write_gif(path, np.concatenate(list(videos), axis=1), fps=pipe.cfg.fps)


def open_cache(path: str, cfg: DiTTrainConfig) -> LatentCache:
    """A latent cache that fits the config's model and text encoder (else a clear error)."""
    cache = LatentCache(path)
    c = cache.latent_shape[0]
    if c != cfg.dit.in_channels or cache.text.shape[-1] != cfg.dit.text_dim:
        raise ValueError(
            f"cache {path} has {c} latent channels and text width {cache.text.shape[-1]}; "
            f"dit expects {cfg.dit.in_channels} and {cfg.dit.text_dim}"
        )
    cached_text = from_dict(TextEncoderConfig, cache.meta.get("text", {}), "cache text")
    if cached_text != cfg.text:  # the pipeline would encode prompts unlike the training text
        raise ValueError(
            f"cache {path} holds text features of {to_dict(cached_text)}; the config's text "
            f"section is {to_dict(cfg.text)}: build the cache with the same encoder or change text"
        )
    return cache


def main(cfg: DiTTrainConfig, resume: bool = False) -> Path:
    """Train the DiT from ``cfg.cache``; returns the run directory (with ``pipeline/`` inside)."""
    # 1. Run directory, data.
    d, run = start_run(cfg, cfg.train, resume)
    if not cfg.cache:
        raise ValueError("cache is empty: build one with `nanosora cache` and pass cache=DIR")
    cache = open_cache(cfg.cache, cfg)
    val = open_cache(cfg.val_cache, cfg) if cfg.val_cache else None
    # 2. Model, optimizer, EMA.
    torch.manual_seed(cfg.train.seed)
    dit = VideoDiT(cfg.dit)
    if cfg.init_from and not (resume and run.exists()):
        load_weights_into(dit, cfg.init_from, "transformer", "dit", cfg.dit)
    if cfg.lora.rank:  # adapters on the frozen base (restored below on resume, like the rest)
        if not cfg.init_from:
            raise ValueError("lora.rank > 0 needs init_from: adapters fine-tune a trained model")
        apply_lora(dit, cfg.lora)
    w, state = prepare(dit, cfg.optim, cfg.train, d, run, resume)
    log(
        d,
        f"DiT {dit.num_params() / 1e6:.2f}M params, {len(cache)} cached clips, latents {cache.latent_shape}",
    )
    # 3. Loop. A multi-shape (bucketed) cache: one shape per batch, sized to the token budget.
    t = cfg.train
    buckets = cache.bucket_sampler(
        t.batch_size, t.token_budget, d.world_size * t.grad_accum, t.seed
    )
    if buckets is not None:
        log(d, f"bucketed batches, {len(buckets)} per epoch:\n{buckets.summary()}")
    micro_batches(t.batch_size, d, t.grad_accum)  # a batch that does not split fails here
    if cfg.flow.image_batch and cfg.flow.image_prob > 0:
        if buckets is not None:
            raise ValueError(
                f"flow.image_batch needs a cache of one latent shape; {cfg.cache} is bucketed"
            )
        micro_batches(cfg.flow.image_batch, d, t.grad_accum)
    grounding = None
    if cfg.flow.ground_weight > 0:
        if buckets is not None:
            raise ValueError(f"flow.ground_weight needs a cache of one latent shape; {cfg.cache} is bucketed")  # fmt: skip
        grounding = GroundingTargets(cfg.cache, cfg.dit.patch_hw)
    weights = clip_weights(cache, cfg, d)
    validate = functools.partial(write_val_loss, w, val, run, cfg, d)
    plots = ("loss", "grad_norm") + (("val_loss",) if val is not None else ())
    done = train(
        w, run, state, t, cfg.optim, d,
        gradients=functools.partial(step_gradients, w, cache, buckets, cfg, d, grounding, weights),
        log_fields=functools.partial(log_fields, d=d),
        name="dit",
        plots=plots,
        hooks=(
            (t.sample_every, functools.partial(write_step_samples, w, cache, run, cfg, d)),
            (cfg.snapshot_every, functools.partial(write_snapshot, w, cache, run, cfg, d)),
            (cfg.val_every if val is not None else 0, validate),
        ),
    )  # fmt: skip
    if done and val is not None and (not cfg.val_every or state["step"] % cfg.val_every):
        validate(state["step"])  # the final weights' validation loss
    # 4. Export the EMA weights (as saved, gathered) as a pipeline, samples and plots (rank 0).
    finish(d)
    if not d.is_main or not done:
        return run.path
    if cfg.lora.rank:  # save the adapter alone, export the merged model
        save_adapter(load_weights(run.path), cfg.lora, run.path / "lora")
    final, _ = export(run.path, run.path / "pipeline", cfg, cache)
    write_samples(final, cfg, cache, run.path / "samples" / "final.gif")
    plot_metrics(run, plots)
    return run.path


def checkpoint_step(run_dir: str | Path) -> int:
    """The step of a run's last checkpoint."""
    return int(torch.load(Path(run_dir) / "state.pt", weights_only=False)["step"])


def export(
    run_dir: str | Path,
    out: str | Path | None = None,
    cfg: DiTTrainConfig | None = None,
    cache: LatentCache | None = None,
) -> tuple[VideoDiT, Path]:
    """Save the EMA weights of a DiT run (finished, or as last checkpointed while it trains) as
    a pipeline in ``out`` (default: ``RUN/snapshots/step_NNNNNN``, the checkpoint's step); LoRA
    runs are merged. Returns the transformer and the pipeline directory."""
    run_dir = Path(run_dir)
    if cfg is None:
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir}/config.yaml: not a DiT run directory")
        cfg = load_config(DiTTrainConfig, run_dir / "config.yaml")
    while True:  # a checkpoint written meanwhile would pair these weights with another step
        step = checkpoint_step(run_dir) if (run_dir / "state.pt").is_file() else None
        weights = load_weights(run_dir)
        if step is None or checkpoint_step(run_dir) == step:
            break
    if out is None:
        if step is None:
            raise FileNotFoundError(f"{run_dir}/state.pt: no checkpoint to name the snapshot by")
        out = snapshot_dir(run_dir, step)
    final = save_pipeline(weights, cfg, cache or LatentCache(cfg.cache), out)
    return final, Path(out)


def snapshot_dir(run_dir: str | Path, step: int) -> Path:
    """Where a run's pipeline snapshot of ``step`` lives."""
    return Path(run_dir) / "snapshots" / f"step_{step:06d}"


def trained_model(weights: dict[str, torch.Tensor], cfg: DiTTrainConfig) -> VideoDiT:
    """The transformer of a run's weights (LoRA merged), in eval mode."""
    final = VideoDiT(cfg.dit)
    if cfg.lora.rank:
        adapted = apply_lora(VideoDiT(cfg.dit), cfg.lora)
        adapted.load_state_dict(weights)
        final.load_state_dict(merge_lora(adapted))
    else:
        final.load_state_dict(weights)
    return final.eval()


def save_pipeline(
    weights: dict[str, torch.Tensor], cfg: DiTTrainConfig, cache: LatentCache, out: str | Path
) -> VideoDiT:
    """A pipeline in ``out`` with a run's transformer weights (LoRA merged); returns the model."""
    final = trained_model(weights, cfg)
    build_pipeline(final, cfg, cache).save(out)
    return final


VAL_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)  # noise shares s of the validation loss


@torch.no_grad()
def level_losses(
    dit: VideoDiT,
    cache: LatentCache,
    clips: int,
    bf16: bool = True,
    levels: tuple[float, ...] = VAL_LEVELS,
    batch_size: int = 32,
) -> dict[float, float]:
    """Velocity MSE of ``dit`` on the first ``clips`` clips of ``cache`` at each noise level of
    ``levels``, averaged over clips. Posterior samples and noise are seeded by the clips'
    positions, so every model meets the same inputs: a loss comparable between checkpoints, runs
    and caches (the training loss draws its levels at random)."""
    device = next(dit.parameters()).device
    n = min(clips, len(cache))
    by_shape: dict[int, list[int]] = {}  # a batch holds one latent shape
    for i in range(n):
        by_shape.setdefault(int(cache.group_of[i]), []).append(i)
    sums = dict.fromkeys(levels, 0.0)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            gen = torch.Generator().manual_seed(rows[0])
            x0, text, mask = cache.batch(rows, gen)
            for s in levels:
                noise = torch.randn(x0.shape, generator=gen)
                level = torch.full((len(rows),), s)
                x, v, lv, tx, m = (a.to(device) for a in (x0, noise, level, text, mask))
                with bf16_autocast(device.type, bf16):
                    pred = dit(add_noise(x, v, lv), lv, tx, m)
                err = (pred.float() - velocity_target(x, v)).pow(2).flatten(1).mean(1)
                sums[s] += err.sum().item()
    return {s: total / n for s, total in sums.items()}


def write_val_loss(
    w: Trainee, val: LatentCache, run: RunDir, cfg: DiTTrainConfig, d: Dist, step: int
) -> None:
    """``val_every``: the EMA weights' (the model's without EMA) ``level_losses`` on
    ``val_cache``, logged as val_loss (their mean) and val_loss_s<level>; every rank calls it
    (FSDP gathers), rank 0 computes."""
    weights = gathered_weights(w)
    if not d.is_main:
        return
    model = trained_model(weights, cfg).to(d.device)
    losses = level_losses(model, val, cfg.val_clips, cfg.train.bf16)
    mean = float(np.mean(list(losses.values())))
    run.log({"step": step, "val_loss": mean, **{f"val_loss_s{s:g}": v for s, v in losses.items()}})
    log(
        d,
        f"step {step}: val_loss {mean:.4f} on {min(cfg.val_clips, len(val))} clips of {cfg.val_cache}",
    )


def clip_weights(cache: LatentCache, cfg: DiTTrainConfig, d: Dist) -> torch.Tensor | None:
    """(n,) draw weight of each cached clip from ``category_weights`` (None when empty); logs
    each category's share of the drawn clips."""
    by_category = cfg.weights_by_category()
    if not by_category:
        return None
    if len(cache.shapes) > 1:
        raise ValueError(f"category_weights needs a cache of one latent shape; {cfg.cache} is bucketed")  # fmt: skip
    categories = [c if isinstance(c, str) else "" for c in cache.manifest_column("category")]
    unknown = sorted(set(by_category) - set(categories))
    if unknown:
        raise ValueError(
            f"category_weights: no clip of {cfg.cache} has category {unknown}; "
            f"its categories: {sorted(set(categories))}"
        )
    weights = torch.tensor([by_category.get(c, 1.0) for c in categories], dtype=torch.float64)
    counts = collections.Counter(categories)
    mass = {c: counts[c] * by_category.get(c, 1.0) for c in sorted(counts)}
    total = sum(mass.values())
    log(d, "clips drawn by category: " + ", ".join(f"{c} {m / total:.1%}" for c, m in mass.items()))
    return weights


def step_gradients(
    w: Trainee,
    cache: LatentCache,
    buckets: TokenBudgetBatchSampler | None,
    cfg: DiTTrainConfig,
    d: Dist,
    grounding: GroundingTargets | None,
    weights: torch.Tensor | None,
    step: int,
) -> StepResult:
    """The gradients of optimizer step ``step`` on this rank's rows of its batch, less the last
    micro-batch's backward (``accumulate``); ``grounding``: the cache's targets when
    ``flow.ground_weight`` > 0; ``weights``: each clip's draw weight (``category_weights``),
    None for epoch-wise permutations."""
    t, f = cfg.train, cfg.flow
    gen = step_generator(t.seed, step)

    def draw(n: int, size: int, step: int, seed: int) -> list[int]:
        if weights is None:
            return batch_indices(n, size, step, seed)
        return weighted_batch_indices(weights, size, step, seed)

    image = f.image_prob > 0 and torch.rand(1, generator=gen).item() < f.image_prob
    if buckets is not None:
        indices = buckets.batch_at(step)
    elif image and f.image_batch:  # image batches draw from their own order of the clips
        indices = draw(len(cache), f.image_batch, step, t.seed + 1)
    else:
        indices = draw(len(cache), t.batch_size, step, t.seed)
    parts = micro_batches(len(indices), d, t.grad_accum)  # this rank's rows of the batch
    if grounding is None:
        x0, text, mask = cache.batch(indices, gen, f.text_dropout)
    else:
        x0, text, mask, dropped = cache.batch(indices, gen, f.text_dropout, with_dropped=True)
    if image:  # the causal VAE's first latent frame is the first image's latent
        x0 = x0[:, :, :1]
    ground = None
    if grounding is not None:
        maps = grounding.batch(cache.index[torch.as_tensor(indices)], text.shape[1])
        ground = token_targets(maps[:, :, : x0.shape[2]], cfg.dit.patch_t)
        ground[dropped] = False  # the null prompt has no words to ground
    drawn = gen.get_state()  # each micro-batch redraws the same whole-batch noise
    logged: list[dict[str, float]] = []

    def loss_of(rows: slice) -> torch.Tensor:
        terms = None if ground is None else {}  # logged with the grounding loss only
        if terms is not None:
            logged.append(terms)
        return flow_loss(w.forward, x0, text, mask, cfg, gen.set_state(drawn), rows, ground, terms)

    last, value = accumulate(loss_of, parts, w.opt, lambda: no_sync(w.wrapped, d))
    return StepResult(last, value, logged, "DiT")


def log_fields(result: StepResult, losses: list[float], d: Dist) -> dict[str, float]:
    """The mean loss since the last line; with grounding, the last step's flow and grounding
    terms (means over micro-batches and ranks)."""
    return {"loss": float(np.mean(losses)), **part_means(result, d)}


def gathered_weights(w: Trainee) -> dict[str, torch.Tensor]:
    """The EMA weights (the model's without EMA) as full tensors; every rank calls it (FSDP
    gathers)."""
    source = w.ema if w.ema is not None else w.model
    return {k: full_tensor(v) for k, v in source.state_dict().items()}


def write_step_samples(
    w: Trainee, cache: LatentCache, run: RunDir, cfg: DiTTrainConfig, d: Dist, step: int
) -> None:
    """Sample GIF of the EMA weights (none without EMA); every rank calls it (FSDP gathers)."""
    if w.ema is None:
        return
    weights = gathered_weights(w)
    if d.is_main:
        sampler = trained_model(weights, cfg)
        write_samples(sampler, cfg, cache, run.path / "samples" / f"step{step:06d}.gif")


def write_snapshot(
    w: Trainee, cache: LatentCache, run: RunDir, cfg: DiTTrainConfig, d: Dist, step: int
) -> None:
    """``snapshot_every``: the EMA weights (the model's without EMA) as a pipeline in
    RUN/snapshots/step_N, written atomically, so a killed run leaves no half of one; every rank
    calls it (FSDP gathers)."""
    weights = gathered_weights(w)
    if d.is_main:
        with atomic_path(snapshot_dir(run.path, step)) as tmp:
            save_pipeline(weights, cfg, cache, tmp)
