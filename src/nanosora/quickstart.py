"""`nanosora quickstart`: the whole reproduction path on the shapes world, on a CPU, in minutes.

    shapes data -> VAE -> decoder -> latent + text cache -> DiT -> pipeline (DIR/model) -> report

The decoder stage keeps training the VAE's decoder alone (``train_encoder: false``): the encoder
and the latent statistics stay as the first stage left them, so the cache and the DiT see the
same latents, and the model decodes them with the tuned decoder.

Each stage is skipped when its output is complete and resumed when it was interrupted, so a
killed quickstart continues where it stopped. The budget is the training time (VAE + decoder +
DiT); data generation, clip decoding, caching and evaluation come on top and are reported
separately.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

from nanosora.config import (
    DataConfig,
    DiTConfig,
    DiTTrainConfig,
    FlowConfig,
    OptimConfig,
    TrainConfig,
    VAELossConfig,
    VAETrainConfig,
)

VAE_SHARE = 0.4  # of the training budget (0.3, with the DiT at 0.6: 83.3% / 87.5% in `qs15k`)
DECODER_SHARE = 0.1  # of the training budget; the DiT gets the rest
# A small DiT: on a CPU budget of minutes, a smaller model's extra steps are worth more than its
# lost capacity. Equal wall time (12.2 min, 1 thread each, two runs side by side, `qs15h`'s cache,
# decoded with its 1.5-min decoder-tuned VAE; adherence in-distribution / held-out, 4 seeds):
#   dim 128, depth 6: 2,670 steps (a step-bounded run of about that time), 75.0% / 81.3%
#                     (median fill of generated squares 0.882, circles 0.853)
#   dim 128, depth 4: 4,225 steps, 86.5% / 84.4% (0.898 / 0.837)
#   dim 128, depth 3: 5,450 steps, 86.5% / 87.5% (0.899 / 0.843)
#   dim  96, depth 4: 5,850 steps, 94.8% / 93.8% (0.903 / 0.837)
#   dim 128, depth 6, mlp ratio 2: 78.1% / 84.4%
# (Earlier, dim 128 / depth 6 had beaten the "shapes" preset, dim 192 / depth 8, the same way.)
QUICK_DIT = DiTConfig(dim=96, depth=4, heads=4)


def vae_config(workdir: Path, minutes: float, seed: int) -> VAETrainConfig:
    """The shapes VAE recipe (configs/shapes_vae.yaml) bounded by time, with two changes.

    - Object pixels weighted 16x instead of 4x: after 1,000 steps the probe read colour / shape
      in 94% / 92% of held-out reconstructions (27.3 dB) against 41% / 75% (25.2 dB) at weight
      4, and 11% / 69% at weight 0. A short run sees too few object pixels to separate hues.
    - Random 9-frame windows of the 17-frame clips (3 latent frames instead of 5): a step costs
      0.18 s instead of 0.31 s, so the same minutes buy ~1.8x the steps. Calibration and the
      final evaluation stay at 17 frames, the clips the DiT is trained on.
    """
    return VAETrainConfig(
        loss=VAELossConfig(object_weight=16.0),
        data=DataConfig(
            manifest=str(workdir / "data/train/manifest.parquet"), num_frames=9, window="random"
        ),
        eval_frames=17,
        optim=OptimConfig(lr=1e-3, warmup_steps=100),
        train=TrainConfig(
            out_dir=str(workdir / "runs/vae"),
            steps=100_000,
            minutes=minutes,
            batch_size=8,
            seed=seed,
            ema_decay=0.998,
            ckpt_every=100,
            sample_every=0,
        ),
        val_manifest=str(workdir / "data/heldout/manifest.parquet"),
    )


def decoder_config(workdir: Path, minutes: float, seed: int) -> VAETrainConfig:
    """Decoder-only tuning of the first stage's VAE, bounded by time, at lr 5e-4.

    Measured outside the budget on two 15-minute quickstarts (`qs15g`, `qs15h`): 3 minutes
    (1,176 steps) took held-out PSNR from 27.8 to 28.8 dB (28.6 to 29.7), and the same DiTs'
    adherence from 80.2% / 84.4% to 91.7% / 87.5% (76.0% / 81.3% to 82.3% / 84.4%); 1.5 minutes
    gave 88.5% / 84.4% (87.5% / 84.4%). Most of the gain is squares: with the first decoder the
    generated squares filled ~0.89 of their box, at the probe's square/circle threshold. Inside
    the budget (`qs15k`, after a 4.5-minute VAE) 1.5 minutes took 27.3 to 28.2 dB and the probe's
    shape reading of reconstructions from 86% to 97%.

    The decoder trains on whole 17-frame clips, the length it decodes for the DiT, not on the
    first stage's 9-frame windows. At equal time (1.5 min on 1 thread, two runs side by side,
    from the first-stage VAEs of `qs15o` / `qs15m`, decoding those runs' DiTs, 8 seeds, 50
    sampling steps): held-out PSNR 28.3 / 29.0 dB against 26.6 / 27.8 dB with 9-frame windows
    (190 steps against 340), adherence 90.1% / 87.5% and 88.0% / 90.6% against 83.3% / 81.2%
    and 89.1% / 89.1%.
    """
    first = vae_config(workdir, minutes, seed)
    return dataclasses.replace(
        first,
        data=dataclasses.replace(first.data, num_frames=17, window="start"),
        init_from=str(workdir / "runs/vae"),
        train_encoder=False,
        optim=OptimConfig(lr=5e-4, warmup_steps=100),
        train=dataclasses.replace(first.train, out_dir=str(workdir / "runs/vae_decoder")),
    )


# Sampling steps of the quickstart's pipeline. With eta = 0.8 more steps mean more chances to
# correct the model; on the models of five 15-minute runs (8 seeds per prompt), mean adherence
# in-distribution / held-out: 15 steps 86.4% / 84.7%, 25 steps 90.2% / 85.0%, 50 steps
# 91.9% / 88.8%, 100 steps 91.6% / 85.9%. One 17x64x64 clip takes 0.34 s at 50 steps, 0.21 s at 25
# (median of 5, 2 threads, `qs15p`).
QUICK_STEPS = 50


def dit_config(workdir: Path, minutes: float, seed: int, num_clips: int = 3000) -> DiTTrainConfig:
    """The shapes DiT recipe (configs/shapes_dit.yaml) on the smaller QUICK_DIT, bounded by time,
    at lr 3e-3: 2,000 steps on one VAE's cache (1 thread, 4 seeds) reached 49.0% / 50.0%
    adherence at lr 1e-3, 64.6% / 75.0% at 2e-3, 68.8% / 78.1% at 3e-3 and 67.7% / 71.9% at
    5e-3 (in-distribution / held-out; colour and direction near 100% in all, the rest shape).
    Those runs used the earlier dim-128 / depth-6 DiT; lr was not tuned again for QUICK_DIT.

    The pipeline samples with FlowConfig's default eta = 0.8 (fresh noise at every step): on the
    models of four 15-minute runs it raised adherence from 78-89% to 85-92%
    in-distribution; with Euler sampling no run had met both targets. It samples with
    QUICK_STEPS steps (the shipped model: 25)."""
    return DiTTrainConfig(
        dit=QUICK_DIT,
        flow=FlowConfig(steps=QUICK_STEPS),
        optim=OptimConfig(lr=3e-3, warmup_steps=100),
        train=TrainConfig(
            out_dir=str(workdir / "runs/dit"),
            steps=100_000,
            minutes=minutes,
            batch_size=min(16, num_clips),
            seed=seed,
            ema_decay=0.995,
            ckpt_every=200,
            sample_every=0,
            # float32: at width 128 the bf16 casts cost more than the faster matmuls save
            # (400 steps on 2 idle threads: 70.8 s in float32, 77.4 s under bf16 autocast).
            bf16=False,
        ),
        cache=str(workdir / "cache"),
        vae=str(workdir / "runs/vae_decoder"),  # the pipeline gets the tuned decoder
    )


def main(
    workdir: str | Path,
    budget_minutes: float = 15.0,
    num_clips: int = 3000,
    seed: int = 0,
    eval_seeds: int = 4,
) -> Path:
    """Run every stage into ``workdir``; returns the path of ``report.html``."""
    from nanosora.data.cache import build_cache
    from nanosora.shapes.world import generate_dataset
    from nanosora.train import dit as train_dit
    from nanosora.train import vae as train_vae

    w = Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    def stage(name: str, fn, done: bool) -> None:
        t0 = time.time()
        if not done:
            print(f"== {name}")
            fn()
        timings[name] = round(time.time() - t0, 1)

    # 1. Data: training clips (held-out compositions excluded) and held-out clips for the VAE.
    stage(
        "data",
        lambda: (
            generate_dataset(w / "data/train", num_clips, seed=seed, workers=2),
            generate_dataset(w / "data/heldout", 64, seed=seed + 1, split="heldout"),
        ),
        (w / "data/heldout/manifest.parquet").is_file(),
    )
    # 2. VAE, 3. decoder, 4. cache, 5. DiT: each resumes its own run directory.
    vcfg = vae_config(w, budget_minutes * VAE_SHARE, seed)
    stage("vae", lambda: train_vae.main(vcfg, resume=True), (w / "runs/vae/eval.json").is_file())
    fcfg = decoder_config(w, budget_minutes * DECODER_SHARE, seed)
    stage(
        "decoder",
        lambda: train_vae.main(fcfg, resume=True),
        (w / "runs/vae_decoder/eval.json").is_file(),
    )
    stage(
        "cache",
        lambda: build_cache(vcfg.data.manifest, w / "runs/vae_decoder", w / "cache"),
        (w / "cache/meta.json").is_file(),
    )
    dcfg = dit_config(w, budget_minutes * (1 - VAE_SHARE - DECODER_SHARE), seed, num_clips)
    stage(
        "dit",
        lambda: train_dit.main(dcfg, resume=True),
        (w / "runs/dit/pipeline/pipeline.yaml").is_file(),
    )
    if (w / "model").exists():
        shutil.rmtree(w / "model")
    shutil.copytree(w / "runs/dit/pipeline", w / "model")
    # 6. Evaluation report.
    t0 = time.time()
    report = write_quickstart_report(w, eval_seeds)
    timings["eval"] = round(time.time() - t0, 1)
    (w / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"quickstart done: model {w / 'model'}, report {report}, timings {timings}")
    return report


def write_quickstart_report(w: Path, eval_seeds: int = 4) -> Path:
    """Adherence (in-distribution and held-out), VAE reconstruction, loss curves, sample videos."""
    from nanosora.evaluate.run import eval_model

    first = json.loads((w / "runs/vae/eval.json").read_text())
    vae_eval = json.loads((w / "runs/vae_decoder/eval.json").read_text())
    extra = {
        "vae_heldout_psnr": vae_eval["psnr"],
        "vae_heldout_ssim": vae_eval["ssim"],
        "vae_probe": vae_eval["probe"],
        "vae_heldout_psnr_before_decoder_tuning": first["psnr"],
        "vae_heldout_ssim_before_decoder_tuning": first["ssim"],
        "vae_probe_before_decoder_tuning": first["probe"],
    }
    images = {
        "VAE training loss": w / "runs/vae/loss.png",
        "VAE decoder tuning loss": w / "runs/vae_decoder/loss.png",
        "DiT training loss": w / "runs/dit/loss.png",
    }
    return eval_model(
        w / "model",
        w,
        seeds=eval_seeds,
        extra_metrics=extra,
        images=images,
        title="nanosora quickstart",
    )
