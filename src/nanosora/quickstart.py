"""`nanosora quickstart`: the whole reproduction path on a CPU, in minutes.

    shapes data -> VAE -> latent + text cache -> DiT -> pipeline (DIR/model) -> report
    scenes data -> VAE -> latent + text cache -> DiT -> pipeline -> scenes benchmark subset

There is no decoder-only stage (as the shipped model's recipe has): on the quickstart's
content-weighted crops, the first stage's decoder gives the same DiT higher adherence than a
decoder tuned on whole clips, and the minutes go to the DiT instead.

The budget is wall-clock time for everything, data and evaluation included. Before each training
stage the time left is split among the training stages still to run, after setting aside what the
other work still to come takes (``OVERHEAD_SECONDS``, scaled by how much slower or faster than
that the work so far ran on this machine). Each stage is skipped when its output is complete (the
evaluation when its report is newer than the model and has the same seeds) and resumed when it
was interrupted, with the minutes it was first given, so a killed quickstart
continues where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from nanosora.config import (
    DataConfig,
    DiTConfig,
    DiTTrainConfig,
    FlowConfig,
    OptimConfig,
    TextEncoderConfig,
    TrainConfig,
    VAEConfig,
    VAELossConfig,
    VAETrainConfig,
)
from nanosora.data.cache import build_cache
from nanosora.evaluate.run import eval_model
from nanosora.evaluate.scenes import bench_scenes
from nanosora.shapes.scenes import CATEGORIES, generate_scenes
from nanosora.shapes.world import generate_dataset
from nanosora.train import dit as train_dit
from nanosora.train import vae as train_vae

# Shares of the training time (VAE, DiT). Half for the VAE: over five seeds it beat 0.4 on mean
# and worst-seed in-distribution adherence, held-out equal (docs/results.md#quickstart).
SHARES = {"vae": 0.5, "dit": 0.5}
# Seconds besides training that each stage takes on an idle 2-core CPU at 3,000 clips and 4 eval
# seeds (writing the clips, decoding them and evaluating the VAE stages, the cache, saving the
# DiT's pipeline, the report); scaled by the clip and seed counts of a run.
OVERHEAD_SECONDS = {
    "data": 20.0,
    "vae": 25.0,
    "cache": 60.0,
    "dit": 5.0,
    "eval": 40.0,
}
PER_CLIP = ("data", "vae", "cache")
# A small DiT: on a CPU budget of minutes, a smaller model's extra steps are worth more than the
# capacity it gives up (dim 96 / depth 4 beat dim 128 / depth 6 and the shipped width at equal time).
QUICK_DIT = DiTConfig(dim=96, depth=4, heads=4)
# Sampling steps of the quickstart's pipeline: with eta = 0.8 more steps give the sampler more
# chances to correct the model; 50 beat 25 and 100 on equal models.
QUICK_STEPS = 50

WORLDS = ("shapes", "scenes")
# The scenes quickstart: training clips, shares of the training time, seconds besides training
# per stage at SCENES_CLIPS clips and one eval seed, the DiT, and the benchmark subset it reports.
SCENES_CLIPS = 8000
SCENES_SHARES = {"vae": 0.15, "dit": 0.85}
SCENES_OVERHEAD_SECONDS = {"data": 60.0, "vae": 30.0, "cache": 150.0, "dit": 15.0, "eval": 240.0}
# The recipe's latents (configs/scenes_vae_s4.yaml: 4x spatial, no temporal compression, 4
# channels) and its DiT (configs/scenes_dit.yaml: 7.4M parameters, patches of 2 x 4 x 4, 144
# tokens) with its text (MiniLM's tokens and a token per clause): the VAE converges in minutes,
# and the wider DiT learns more per hour than narrower ones.
SCENES_VAE = VAEConfig(
    latent_channels=4, base_channels=16, channel_mult=(1, 3), temporal_down=(False,), fold=2
)
SCENES_DIT = DiTConfig(
    in_channels=4, patch_t=2, patch_hw=4, dim=192, depth=8, heads=6, abs_pos=True
)
SCENES_TEXT = TextEncoderConfig(clauses=4)
SCENES_EVAL_PER_GROUP = 8
SCENES_SAMPLE_PROMPTS = (
    "a small red circle and a big blue square",
    "a green triangle bounces off the right wall",
    "a yellow circle passes behind a purple square",
)


def vae_config(workdir: Path, minutes: float, seed: int, colour: float = 0.0) -> VAETrainConfig:
    """The shapes VAE recipe (configs/shapes_vae.yaml) bounded by time, with two changes.

    - Object pixels weighted 16x instead of 4x: a short run sees too few object pixels to
      separate hues, and the probe reads colour and shape of its reconstructions far better.
    - Random 9-frame windows of the 17-frame clips (a step costs ~0.6x), and 32x32 crops of
      those (~0.3x again), placed where the object is (``crop_content``; uniform crops hold
      less than half of it on average): the same minutes buy ~4x the steps of whole windows,
      and better held-out reconstructions and probe reads where a step is slow (float32 on a
      CPU without bf16 units). Calibration and the final evaluation stay at 17 whole frames,
      the DiT's clips.

    ``colour``: weight of the mean-object-colour term (``loss.colour``), off by default.
    """
    return VAETrainConfig(
        loss=VAELossConfig(object_weight=16.0, colour=colour),
        data=DataConfig(
            manifest=str(workdir / "data/train/manifest.parquet"), num_frames=9, window="random"
        ),
        eval_frames=17,
        crop=32,
        crop_content=True,
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


def dit_config(workdir: Path, minutes: float, seed: int, num_clips: int = 3000) -> DiTTrainConfig:
    """The shapes DiT recipe (configs/shapes_dit.yaml) on the smaller QUICK_DIT, bounded by time,
    at lr 3e-3 (the best of 1e-3 to 5e-3 at 2,000 steps). The pipeline samples with QUICK_STEPS
    steps and FlowConfig's default eta = 0.8 (fresh noise at every step)."""
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
            bf16=False,  # at this width bf16 casts cost more than the faster matmuls save
        ),
        cache=str(workdir / "cache"),
        vae=str(workdir / "runs/vae"),
    )


@dataclasses.dataclass
class Budget:
    """The wall-clock plan of one quickstart: deadline, overheads still to come, stage minutes.

    Minutes given to a stage are recorded in ``plan.json``, so a resumed stage keeps them (and
    with them its learning-rate schedule). ``observe`` compares the overheads measured so far
    with their estimates; the ratio scales the overheads still to come."""

    path: Path
    seconds: float
    overhead: dict[str, float]
    start: float = dataclasses.field(default_factory=time.time)
    shares: dict[str, float] = dataclasses.field(default_factory=lambda: dict(SHARES))
    measured: dict[str, float] = dataclasses.field(default_factory=dict)

    def observe(self, stage: str, seconds: float) -> None:
        """Record the seconds ``stage`` took besides training."""
        self.measured[stage] = seconds

    def slowdown(self) -> float:
        """Measured / estimated overheads so far, within [0.5, 4]; 1 before any measurement."""
        if not self.measured:
            return 1.0
        ratio = sum(self.measured.values()) / sum(self.overhead[s] for s in self.measured)
        return min(4.0, max(0.5, ratio))

    def planned(self) -> dict[str, float]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def minutes(self, stage: str, to_come: list[str]) -> float:
        """Minutes for training ``stage``, given the stages still to come after it."""
        plan = self.planned()
        if stage not in plan:
            left = self.seconds - (time.time() - self.start)
            left -= self.slowdown() * sum(self.overhead[s] for s in [stage, *to_come])
            training = [stage, *(s for s in to_come if s in self.shares)]
            share = self.shares[stage] / sum(self.shares[s] for s in training)
            # A budget too small for the overheads still trains each stage a little.
            floor = 0.05 * self.shares[stage] * self.seconds
            plan[stage] = round(max(left * share, floor) / 60, 4)
            self.path.write_text(json.dumps(plan, indent=2))
        return plan[stage]

    def status(self) -> str:
        used = time.time() - self.start
        return f"{used / 60:.1f} of {self.seconds / 60:.1f} min used"


class Stages:
    """Runs a quickstart's stages in order: each is skipped when its output is complete, timed,
    and its time besides training reported to the budget."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.timings: dict[str, float] = {}
        self.skipped: list[str] = []

    def __call__(
        self, name: str, fn: Callable[[], object], done: bool, minutes: float = 0.0
    ) -> None:
        t0 = time.time()
        if done:
            self.skipped.append(name)
        else:
            print(f"== {name} ({self.budget.status()})")
            fn()
            self.budget.observe(name, time.time() - t0 - 60 * minutes)
        self.timings[name] = round(time.time() - t0, 1)

    def train(self, name: str, cfg: VAETrainConfig | DiTTrainConfig) -> None:
        """Train (or resume) the run ``cfg``; skipped once the run has finished."""
        out = Path(cfg.train.out_dir)
        if isinstance(cfg, DiTTrainConfig):
            fn, done = train_dit.main, out / "pipeline/pipeline.yaml"
        else:
            fn, done = train_vae.main, out / "eval.json"
        self(name, lambda: fn(cfg, resume=True), done.is_file(), cfg.train.minutes)

    def finish(self, w: Path, **extra: object) -> None:
        """Write ``timings.json``: seconds per stage, the stages skipped, total and plan."""
        record = {
            "seconds": self.timings,
            "skipped": self.skipped,
            "total": round(time.time() - self.budget.start, 1),
            "budget": self.budget.seconds,
            "minutes": self.budget.planned(),
            "slowdown": round(self.budget.slowdown(), 2),
            **extra,
        }
        (w / "timings.json").write_text(json.dumps(record, indent=2))


def _publish(w: Path) -> None:
    """Copy the DiT run's pipeline to ``w/model`` (usable as ``--model``)."""
    if (w / "model").exists():
        shutil.rmtree(w / "model")
    shutil.copytree(w / "runs/dit/pipeline", w / "model")


def _reported(w: Path, eval_seeds: int) -> bool:
    """True if ``w``'s report was written after its DiT's pipeline, with ``eval_seeds`` seeds."""
    report, model = w / "report.json", w / "runs/dit/pipeline/pipeline.yaml"
    if not (report.is_file() and (w / "report.html").is_file() and model.is_file()):
        return False
    if report.stat().st_mtime < model.stat().st_mtime:
        return False
    try:
        return json.loads(report.read_text())["metrics"]["seeds"] == eval_seeds
    except (json.JSONDecodeError, KeyError, TypeError):
        return False


def shares_with(default: dict[str, float], vae_share: float | None) -> dict[str, float]:
    """The training-time shares: ``default``, or ``vae_share`` for the VAE and the rest for the
    DiT."""
    if vae_share is None:
        return dict(default)
    if not 0 < vae_share < 1:
        raise ValueError(f"vae_share must be between 0 and 1 (exclusive), got {vae_share}")
    return {"vae": vae_share, "dit": 1 - vae_share}


def main(
    workdir: str | Path,
    budget_minutes: float = 15.0,
    num_clips: int | None = None,
    seed: int = 0,
    eval_seeds: int | None = None,
    world: str = "shapes",
    eval_per_group: int = SCENES_EVAL_PER_GROUP,
    vae_share: float | None = None,
    vae_colour: float = 0.0,
) -> Path:
    """Run every stage into ``workdir`` within ``budget_minutes``; returns the report.

    ``world="shapes"``: the one-object world (3,000 clips, adherence over 4 seeds; report.html);
    ``world="scenes"``: the compositional world (`main_scenes`, report.json of its benchmark on
    the first ``eval_per_group`` prompts of each group). ``vae_share``: the VAE stage's share of
    the training time instead of the world's default (the DiT gets the rest). ``vae_colour``:
    the shapes VAE stage's ``loss.colour`` weight.
    """
    if world == "scenes":
        n = num_clips or SCENES_CLIPS
        shares = shares_with(SCENES_SHARES, vae_share)
        return main_scenes(
            workdir, budget_minutes, n, seed, eval_seeds or 1, eval_per_group, shares
        )
    if world != "shapes":
        raise ValueError(f"unknown world {world!r}; expected one of {WORLDS}")
    num_clips, eval_seeds = num_clips or 3000, eval_seeds or 4
    if vae_colour < 0:  # fails before any stage runs
        raise ValueError(f"vae_colour must be >= 0, got {vae_colour}")
    w = Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    overhead = {
        s: v * (num_clips / 3000 if s in PER_CLIP else eval_seeds / 4 if s == "eval" else 1)
        for s, v in OVERHEAD_SECONDS.items()
    }
    budget = Budget(
        w / "plan.json", 60 * budget_minutes, overhead, shares=shares_with(SHARES, vae_share)
    )
    stage = Stages(budget)
    # 1. Data: training clips (held-out compositions excluded) and held-out clips for the VAE.
    stage(
        "data",
        lambda: (
            generate_dataset(w / "data/train", num_clips, seed=seed, workers=2),
            generate_dataset(w / "data/heldout", 64, seed=seed + 1, split="heldout"),
        ),
        (w / "data/heldout/manifest.parquet").is_file(),
    )
    # 2. VAE, 3. cache, 4. DiT: each resumes its own run directory.
    vcfg = vae_config(w, budget.minutes("vae", ["cache", "dit", "eval"]), seed, vae_colour)
    stage.train("vae", vcfg)
    stage(
        "cache",
        lambda: build_cache(vcfg.data.manifest, w / "runs/vae", w / "cache"),
        (w / "cache/meta.json").is_file(),
    )
    dcfg = dit_config(w, budget.minutes("dit", ["eval"]), seed, num_clips)
    stage.train("dit", dcfg)
    _publish(w)
    # 5. Evaluation report: kept when it was written for this model with these seeds.
    report = w / "report.html"
    stage("eval", lambda: write_quickstart_report(w, eval_seeds), _reported(w, eval_seeds))
    stage.finish(w)
    print(f"quickstart done ({budget.status()}): model {w / 'model'}, report {report}")
    return report


def scenes_vae_config(workdir: Path, minutes: float, seed: int) -> VAETrainConfig:
    """`vae_config` (random 9-frame windows and 32x32 crops, bounded by time) for the scenes
    world, from nothing: SCENES_VAE (4x4 spatial compression, every frame kept, so small objects
    cover several latent cells and fast events stay apart), and object pixels weighted 4x (the
    scenes world has more of them). Crops are placed uniformly: content-weighted crops are
    measured on the shapes world only."""
    return dataclasses.replace(
        vae_config(workdir, minutes, seed),
        vae=SCENES_VAE,
        loss=VAELossConfig(object_weight=4.0),
        crop_content=False,
    )


def scenes_dit_config(workdir: Path, minutes: float, seed: int, num_clips: int) -> DiTTrainConfig:
    """`dit_config` with SCENES_DIT on the scenes latents (144 tokens) and SCENES_TEXT, the scenes
    recipe's training shift (6) and sampler (25 steps, guidance 3), optimizer and lr (Muon at
    1.5e-3, here with a shorter warmup), batch 32, bf16 where the CPU has the units (at this width
    it is ~1.5x faster per step) and the VAE of the first stage."""
    quick = dit_config(workdir, minutes, seed, num_clips)
    return dataclasses.replace(
        quick,
        dit=SCENES_DIT,
        text=SCENES_TEXT,
        flow=FlowConfig(cfg_scale=3.0, train_shift=6.0),
        optim=OptimConfig(kind="muon", lr=1.5e-3, warmup_steps=200),
        train=dataclasses.replace(quick.train, batch_size=min(32, num_clips), bf16=True),
        vae=str(workdir / "runs/vae"),
        sample_prompts=SCENES_SAMPLE_PROMPTS,
    )


def main_scenes(
    workdir: str | Path,
    budget_minutes: float = 60.0,
    num_clips: int = 8000,
    seed: int = 0,
    eval_seeds: int = 1,
    per_group: int = SCENES_EVAL_PER_GROUP,
    shares: dict[str, float] = SCENES_SHARES,
) -> Path:
    """The scenes world from nothing: data -> VAE -> cache -> DiT -> a subset of the scenes
    benchmark (the first ``per_group`` prompts of each group of each category, ``eval_seeds``
    seeds). Returns the benchmark's report.json (report.html beside it)."""
    w = Path(workdir)
    w.mkdir(parents=True, exist_ok=True)
    overhead = {
        s: v * (num_clips / SCENES_CLIPS if s in PER_CLIP else eval_seeds if s == "eval" else 1)
        for s, v in SCENES_OVERHEAD_SECONDS.items()
    }
    budget = Budget(w / "plan.json", 60 * budget_minutes, overhead, shares=dict(shares))
    stage = Stages(budget)
    stage(
        "data",
        lambda: (
            generate_scenes(w / "data/train", num_clips, seed=seed, workers=2),
            generate_scenes(
                w / "data/heldout", min(128, num_clips), seed=seed + 1, split="heldout"
            ),
        ),
        (w / "data/heldout/manifest.parquet").is_file(),
    )
    vcfg = scenes_vae_config(w, budget.minutes("vae", ["cache", "dit", "eval"]), seed)
    stage.train("vae", vcfg)
    stage(
        "cache",
        lambda: build_cache(vcfg.data.manifest, w / "runs/vae", w / "cache", SCENES_TEXT),
        (w / "cache/meta.json").is_file(),
    )
    dcfg = scenes_dit_config(w, budget.minutes("dit", ["eval"]), seed, num_clips)
    stage.train("dit", dcfg)
    _publish(w)
    # The benchmark keeps the clips it generated before and grades them all again.
    bench = w / "bench"
    report = bench / "report.json"
    stage("eval", lambda: bench_scenes(w / "model", bench, eval_seeds, per_group=per_group), False)
    summary = json.loads(report.read_text())["summary"]
    scores = {c: summary[c]["all"]["score"] for c in CATEGORIES}
    mean = sum(scores.values()) / len(scores)
    stage.finish(w, scores=scores, mean_score=round(mean, 4))
    table = ", ".join(f"{c} {100 * v:.0f}%" for c, v in scores.items())
    print(f"quickstart done ({budget.status()}): model {w / 'model'}, report {report}")
    print(f"scenes benchmark subset: mean {100 * mean:.1f}% ({table})")
    return report


def write_quickstart_report(w: Path, eval_seeds: int = 4) -> Path:
    """Adherence (in-distribution and held-out), VAE reconstruction, loss curves, sample videos."""
    vae_eval = json.loads((w / "runs/vae/eval.json").read_text())
    extra = {
        "vae_heldout_psnr": vae_eval["psnr"],
        "vae_heldout_ssim": vae_eval["ssim"],
        "vae_probe": vae_eval["probe"],
    }
    images = {
        "VAE training loss": w / "runs/vae/loss.png",
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
