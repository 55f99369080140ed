"""Data-parallel DiT and VAE training on CPU (gloo): real torchrun processes against one process.

Each multi-process run is ``python -m torch.distributed.run --nproc_per_node=2 -m nanosora.cli
train dit|vae`` in a subprocess with a timeout (a hang fails the test instead of stalling the suite),
and process groups get ``train.dist_timeout``.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nanosora.config import (
    DiTConfig,
    DiTTrainConfig,
    VAEConfig,
    VAETrainConfig,
    apply_overrides,
    save_config,
)
from nanosora.models.vae import VideoVAE
from nanosora.shapes.world import generate_dataset
from nanosora.train import dit as train_dit
from nanosora.train import vae as train_vae
from nanosora.train.checkpoint import RunDir
from nanosora.train.distributed import Dist, init_distributed, micro_batches

TINY_VAE = VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4)
TINY_DIT = DiTConfig(in_channels=4, dim=32, depth=2, heads=2)
CLIPS, LATENT, TEXT_LEN = 24, (4, 3, 4, 4), 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    """A random tiny VAE run and a latent cache written directly (no encoding needed)."""
    root = tmp_path_factory.mktemp("dist")
    vae_dir, cache = root / "vae", root / "cache"
    vae_dir.mkdir()
    cache.mkdir()
    torch.manual_seed(0)
    save_file(VideoVAE(TINY_VAE).state_dict(), str(vae_dir / "model.safetensors"))
    save_config(VAETrainConfig(vae=TINY_VAE), vae_dir / "config.yaml")
    mask = torch.zeros(CLIPS, TEXT_LEN, dtype=torch.uint8)
    for i in range(CLIPS):
        mask[i, : 2 + i % (TEXT_LEN - 1)] = 1
    shard = {
        "mean": torch.randn(CLIPS, *LATENT),
        "logvar": torch.full((CLIPS, *LATENT), -4.0),
        "text": (torch.randn(CLIPS, TEXT_LEN, 384) * mask[..., None]).half(),
        "mask": mask,
        "index": torch.arange(CLIPS),
    }
    save_file(shard, str(cache / "shard-00000.safetensors"))
    meta = {
        "manifest": str(root / "none.parquet"),
        "vae": str(vae_dir),
        "latent_mean": [0.0] * 4,
        "latent_std": [1.0] * 4,
        "text": {"kind": "minilm", "path": "", "max_length": 32},
        "null_text": torch.randn(2, 384).tolist(),
        "num_frames": 9,
        "height": 32,
        "width": 32,
        "fps": 8.0,
        "rows": CLIPS,
        "shards": [{"file": "shard-00000.safetensors", "rows": CLIPS}],
    }
    (cache / "meta.json").write_text(json.dumps(meta))
    return vae_dir, cache


LOOP = {  # both trainers' test runs: checkpoints and metrics every step or two, float32
    "train.ckpt_every": 2,
    "train.log_every": 1,
    "train.sample_every": 0,
    "train.threads": 1,
    "train.bf16": False,  # exact float32 comparisons
    "train.dist_timeout": 60,
    "optim.warmup_steps": 2,
    "optim.lr": 3e-3,
}


def config(setup, out: Path, steps: int = 20, **over) -> DiTTrainConfig:
    vae_dir, cache = setup
    items = {
        "cache": cache,
        "vae": vae_dir,
        "train.out_dir": out,
        "train.steps": steps,
        "train.batch_size": 8,
        **LOOP,
        "flow.steps": 2,
        "sample_prompts": "[a red circle moving left]",
        **over,
    }
    return apply_overrides(DiTTrainConfig(dit=TINY_DIT), [f"{k}={v}" for k, v in items.items()])


def torchrun(cfg: DiTTrainConfig | VAETrainConfig, tmp: Path, nproc: int = 2, resume: bool = False):
    """``torchrun --nproc_per_node=N -m nanosora.cli train dit|vae`` as a subprocess, with a
    timeout."""
    path = tmp / f"{Path(cfg.train.out_dir).name}.yaml"
    save_config(cfg, path)
    stage = "vae" if isinstance(cfg, VAETrainConfig) else "dit"
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}"]
    cmd += ["--standalone", "-m", "nanosora.cli", "train", stage, "--config", str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        cmd + (["--resume"] if resume else []), capture_output=True, text=True, timeout=300, env=env
    )


def losses(run: Path) -> list[float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(x)["loss"] for x in lines if "loss" in json.loads(x)]


# Split batches sum their gradients in another order: float32 rounding reaches ~1e-5 of the loss
# over 12 steps; a missing all-reduce (each rank on its own half batch) moves it by percents.
SPLIT_REL = 5e-5


def assert_close_trajectories(a: list[float], b: list[float], rel: float) -> None:
    assert len(a) == len(b) and len(a) > 0
    worst = max(abs(x - y) / abs(y) for x, y in zip(a, b))
    assert worst < rel, f"worst relative difference {worst:.2e}: {a} vs {b}"


def test_two_process_ddp_follows_one_process(setup, tmp_path) -> None:
    one = train_dit.main(config(setup, tmp_path / "one"))
    proc = torchrun(config(setup, tmp_path / "ddp", **{"train.parallel": "ddp"}), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ddp on cpu, 2 process(es)" in proc.stdout  # both ranks really ran
    assert proc.stdout.count("process(es)") == 2
    ddp = tmp_path / "ddp"
    assert len(losses(one)) == 20
    assert_close_trajectories(losses(ddp), losses(one), rel=SPLIT_REL)
    # The loss moved (the comparison is not between two flat lines) ...
    assert abs(losses(one)[-1] - losses(one)[0]) > 1e-3
    # ... and the exported pipeline exists once (rank 0).
    assert (ddp / "pipeline/pipeline.yaml").is_file() and (ddp / "checkpoint").is_dir()


def test_grad_accumulation_and_activation_checkpointing_keep_the_trajectory(setup, tmp_path):
    one = train_dit.main(config(setup, tmp_path / "one", steps=8))
    over = {"train.grad_accum": 4, "train.activation_checkpointing": True}
    accum = train_dit.main(config(setup, tmp_path / "accum", steps=8, **over))
    assert_close_trajectories(losses(accum), losses(one), rel=SPLIT_REL)


def test_fsdp_checkpoint_resumes_in_one_process(setup, tmp_path) -> None:
    # 1. Two FSDP processes train 4 steps and save a sharded checkpoint.
    # A constant lr after warmup: the schedule must not depend on train.steps, which grows.
    flat = {"optim.min_lr_ratio": 1.0}
    fsdp_cfg = config(setup, tmp_path / "run", steps=4, **flat, **{"train.parallel": "fsdp"})
    proc = torchrun(fsdp_cfg, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    assert torch.load(run / "state.pt", weights_only=False)["step"] == 4
    assert len(list((run / "checkpoint").glob("*.distcp"))) == 2  # one shard file per rank
    # 2. One plain process resumes to step 6 ...
    resumed = train_dit.main(config(setup, run, steps=6, **flat), resume=True)
    # 3. ... on the trajectory of one process that ran all 6 steps (optimizer state included).
    straight = train_dit.main(config(setup, tmp_path / "straight", steps=6, **flat))
    assert [
        json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()
    ] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]
    assert_close_trajectories(losses(resumed), losses(straight), rel=1e-4)
    a, b = load_file(str(resumed / "ema.safetensors")), load_file(str(straight / "ema.safetensors"))
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5, msg=k)
    # 4. A checkpoint of another model is refused, naming the difference.
    other = config(setup, run, steps=8, **{"dit.dim": 64})
    with pytest.raises(ValueError, match="do not match this model.*other shapes"):
        train_dit.main(other, resume=True)


def test_what_accelerate_launch_really_starts(setup, tmp_path) -> None:
    """``--cpu --num_processes 2`` starts one process (said in the log); the shipped config two."""
    cfg = config(setup, tmp_path / "acc", steps=2, **{"train.parallel": "ddp"})
    save_config(cfg, tmp_path / "acc.yaml")
    shipped = Path(__file__).parents[2] / "configs/accelerate/multi_gpu.yaml"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    runs = {}
    for name, flags in {
        "cpu": ["--cpu", "--num_processes", "2", "--num_machines", "1"],
        "config": ["--config_file", str(shipped), "--num_processes", "2"],
    }.items():
        over = [f"train.out_dir={tmp_path / name}"]
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *flags]  # no PATH needed
        cmd += ["--mixed_precision", "no", "--dynamo_backend", "no"]
        cmd += ["-m", "nanosora.cli", "train", "dit", "--config", str(tmp_path / "acc.yaml"), *over]
        runs[name] = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        assert runs[name].returncode == 0, runs[name].stderr[-3000:]
    assert "(accelerate --cpu ignores --num_processes): training in ONE" in runs["cpu"].stdout
    assert "ddp on cpu, 1 process(es)" in runs["cpu"].stdout
    assert runs["config"].stdout.count("ddp on cpu, 2 process(es)") == 2


def test_world_size_not_dividing_the_batch_fails_fast(setup, tmp_path) -> None:
    cfg = config(
        setup, tmp_path / "odd", steps=2, **{"train.parallel": "ddp", "train.batch_size": 5}
    )
    proc = torchrun(cfg, tmp_path)
    assert proc.returncode != 0
    assert "cannot be split evenly over 2 process(es)" in proc.stderr


def test_micro_batches_cover_the_batch_once() -> None:
    rows = [
        r
        for rank in range(2)
        for part in micro_batches(12, Dist(rank=rank, world_size=2, parallel="ddp"), 3)
        for r in range(12)[part]
    ]
    assert rows == list(range(12))
    with pytest.raises(ValueError, match="multiple of 4"):
        micro_batches(6, Dist(rank=0, world_size=2, parallel="ddp"), 2)


def test_several_processes_without_parallel_is_an_error(monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="train.parallel=ddp or fsdp"):
        init_distributed(DiTTrainConfig().train)


def test_gpu_recipes_load_and_match_the_presets() -> None:
    from nanosora.config import DIT_PRESETS, VAE_PRESETS, ConfigError, load_config

    root = Path(__file__).parents[2] / "configs"
    assert load_config(VAETrainConfig, root / "gpu_vae.yaml").vae == VAE_PRESETS["video-4x8x8"]
    for name in ("base", "large"):
        cfg = load_config(DiTTrainConfig, root / f"gpu_dit_{name}.yaml")
        assert cfg.dit == DIT_PRESETS[name]
        assert cfg.dit.in_channels == VAE_PRESETS["video-4x8x8"].latent_channels
        micro_batches(
            cfg.train.batch_size, Dist(world_size=8, parallel="ddp"), cfg.train.grad_accum
        )
    # Micro-batches of 2 clips (8 do not fit one GPU): on one GPU, and on 8 as its header says.
    vae = load_config(VAETrainConfig, root / "gpu_vae.yaml")
    parts = micro_batches(vae.train.batch_size, Dist(), vae.train.grad_accum)
    assert {p.stop - p.start for p in parts} == {2}
    overrides = ["train.parallel=fsdp", "train.batch_size=64"]
    vae = load_config(VAETrainConfig, root / "gpu_vae.yaml", overrides)
    parts = micro_batches(64, Dist(world_size=8, parallel="fsdp"), vae.train.grad_accum)
    assert {p.stop - p.start for p in parts} == {2}
    with pytest.raises(ConfigError, match="train.parallel"):
        load_config(VAETrainConfig, root / "gpu_vae.yaml", ["train.parallel=zero"])


def _agree(rank: int, port: int, out: str) -> None:
    import datetime

    import torch.distributed as dist

    from nanosora.train.distributed import any_rank

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=30),
    )
    d = Dist(rank=rank, world_size=2, parallel="ddp")
    # Only rank 1's wall-clock budget ran out: both must stop, or rank 0 would wait forever.
    result = [any_rank(rank == 1, d), any_rank(False, d)]
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def test_ranks_agree_to_stop(tmp_path) -> None:
    import torch.multiprocessing as mp

    from nanosora.train.distributed import _free_port

    mp.spawn(_agree, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == [True, False]


# -- the VAE loop ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root, 12, seed=5, progress=False)
    return root / "manifest.parquet"


def vae_config(clips: Path, out: Path, steps: int = 12, **over) -> VAETrainConfig:
    items = {
        "data.manifest": clips,
        "data.num_frames": 9,
        "data.height": 32,
        "data.width": 32,
        "train.out_dir": out,
        "train.steps": steps,
        "train.batch_size": 4,
        "loss.object_weight": 4.0,  # the shapes recipe's: shares must normalise it globally
        **LOOP,
        **over,
    }
    return apply_overrides(VAETrainConfig(vae=TINY_VAE), [f"{k}={v}" for k, v in items.items()])


def test_two_process_ddp_vae_follows_one_process(clips, tmp_path) -> None:
    one = train_vae.main(vae_config(clips, tmp_path / "one"))
    proc = torchrun(vae_config(clips, tmp_path / "ddp", **{"train.parallel": "ddp"}), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ddp on cpu, 2 process(es)") == 2  # both ranks really ran
    ddp = tmp_path / "ddp"
    assert len(losses(one)) == 12
    assert_close_trajectories(losses(ddp), losses(one), rel=SPLIT_REL)
    assert abs(losses(one)[-1] - losses(one)[0]) > 1e-3  # the loss moved
    # Rank 0 alone evaluated and wrote the GIF; calibrated statistics are in both weight files
    # and agree with one process's.
    assert (ddp / "eval.json").is_file() and (ddp / "samples/final.gif").is_file()
    assert proc.stdout.count("PSNR") == 1
    ema, raw = load_file(str(ddp / "ema.safetensors")), load_file(str(ddp / "model.safetensors"))
    ref = load_file(str(one / "ema.safetensors"))
    for k in ("latent_mean", "latent_std"):
        assert torch.equal(ema[k], raw[k]) and not torch.equal(ema[k], torch.ones_like(ema[k]))
        torch.testing.assert_close(ema[k], ref[k], rtol=1e-4, atol=1e-5)


def test_vae_grad_accumulation_and_checkpointing_keep_the_trajectory(clips, tmp_path) -> None:
    one = train_vae.main(vae_config(clips, tmp_path / "one", steps=6))
    over = {"train.grad_accum": 2, "train.activation_checkpointing": True}
    accum = train_vae.main(vae_config(clips, tmp_path / "accum", steps=6, **over))
    assert_close_trajectories(losses(accum), losses(one), rel=SPLIT_REL)


FLAT = {"optim.min_lr_ratio": 1.0}  # resumed runs grow train.steps: keep the lr schedule flat


@pytest.fixture(scope="module")
def vae_straight(clips, tmp_path_factory) -> Path:
    """One process, 6 steps without interruption: what resumed runs must reproduce."""
    out = tmp_path_factory.mktemp("straight") / "run"
    return train_vae.main(vae_config(clips, out, steps=6, **FLAT))


def test_fsdp_vae_checkpoint_resumes_in_one_process(clips, vae_straight, tmp_path) -> None:
    # 1. Two FSDP processes train 4 steps (writing a GIF from gathered weights on the way).
    flat = FLAT
    two = vae_config(clips, tmp_path / "run", steps=4, **flat, **{"train.parallel": "fsdp"})
    proc = torchrun(apply_overrides(two, ["train.sample_every=2"]), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    assert len(list((run / "checkpoint").glob("*.distcp"))) == 2  # one shard file per rank
    assert (run / "samples/step000002.gif").is_file()
    # 2. One plain process resumes to step 6, on the trajectory of one that ran all 6 steps.
    resumed = train_vae.main(vae_config(clips, run, steps=6, **flat), resume=True)
    assert [r["step"] for r in RunDir(resumed).metrics() if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert_close_trajectories(losses(resumed), losses(vae_straight), rel=1e-4)
    # 3. Another VAE preset is refused, naming what differs.
    other = vae_config(clips, run, steps=8, **{"vae.base_channels": 16})
    with pytest.raises(ValueError, match="do not match this model.*other shapes"):
        train_vae.main(other, resume=True)


def test_vae_world_size_not_dividing_the_batch_fails_fast(clips, tmp_path) -> None:
    bad = {"train.parallel": "ddp", "train.batch_size": 5}
    proc = torchrun(vae_config(clips, tmp_path / "odd", steps=2, **bad), tmp_path)
    assert proc.returncode != 0
    assert "cannot be split evenly over 2 process(es)" in proc.stderr


def test_one_process_vae_checkpoint_resumes_in_two_fsdp_processes(
    clips, vae_straight, tmp_path
) -> None:
    """The other way: a plain run (full tensors, indexed optimizer state) scaled out to FSDP."""
    run = train_vae.main(vae_config(clips, tmp_path / "run", steps=4, **FLAT))
    assert not (run / "checkpoint").exists()
    two = vae_config(clips, run, steps=6, **FLAT, **{"train.parallel": "fsdp"})
    proc = torchrun(two, tmp_path, resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "written by 1 process (train.parallel=none); resuming with 2 (fsdp)" in proc.stdout
    assert [r["step"] for r in RunDir(run).metrics() if "loss" in r] == [1, 2, 3, 4, 5, 6]
    assert_close_trajectories(losses(run), losses(vae_straight), rel=1e-4)
    a, b = load_file(str(run / "ema.safetensors")), load_file(str(vae_straight / "ema.safetensors"))
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-3, atol=1e-5, msg=k)
