"""The real-video path at tiny sizes: long videos -> shot timestamps -> `nanosora clips` -> VAE on
bucketed batches -> multi-shape latent cache -> DiT on token-budget batches -> samples.

The footage is ``nanosora.video.footage`` (a virtual camera over matplotlib's real pictures) at
36x64-ish sizes; buckets are 5 frames at 32x64, 64x32 and 32x32, plus 32x32 images (T=1).
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from nanosora.config import (
    DataConfig,
    DiTConfig,
    DiTTrainConfig,
    TrainConfig,
    VAEConfig,
    VAETrainConfig,
    apply_overrides,
)
from nanosora.data import clips as cut
from nanosora.data.buckets import tokens_of
from nanosora.data.cache import LatentCache, build_cache
from nanosora.data.datasets import ClipWindowDataset, training_clips
from nanosora.train import dit as train_dit
from nanosora.train import vae as train_vae
from nanosora.video.footage import write_footage

TINY_VAE = VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4)
TINY_DIT = DiTConfig(in_channels=4, dim=32, depth=2, heads=2)
BUCKETS = [(5, 32, 64), (5, 64, 32), (5, 32, 32), (1, 32, 32)]
SHAPE = {"num_frames": 5, "height": 32, "width": 32}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    """A manifest of real clips cut by `nanosora clips` from mixed-aspect long videos."""
    root = tmp_path_factory.mktemp("footage")
    long = write_footage(root / "long", videos=4, seed=1, sizes=((36, 64), (64, 36), (48, 48)))
    return cut.main(cut.ClipsConfig(manifest=long, out_dir=root / "clips", progress=False))


def loop(out: Path, steps: int) -> list[str]:
    """Overrides of a short run: batches of 4 (at the default shape), checkpoint every 2 steps."""
    keys = {"out_dir": out, "steps": steps, "batch_size": 4, "ckpt_every": 2, "log_every": 1}
    return [f"train.{k}={v}" for k, v in keys.items()] + [
        "train.sample_every=0",
        "optim.warmup_steps=1",
    ]


def vae_cfg(manifest: Path, out: Path, steps: int = 4) -> VAETrainConfig:
    buckets = "[" + ", ".join(f"[{t}, {h}, {w}]" for t, h, w in BUCKETS) + "]"
    return apply_overrides(
        VAETrainConfig(vae=TINY_VAE),
        [
            f"data.manifest={manifest}",
            "data.num_frames=5",
            "data.height=32",
            "data.width=32",
            "data.in_memory=false",
            "data.window=random",
            "data.crop=random",
            "data.caption=random",
            f"data.buckets={buckets}",
            "loss.object_weight=0.0",
            *loop(out, steps),
        ],
    )


@pytest.fixture(scope="module")
def vae_run(clips, tmp_path_factory) -> Path:
    return train_vae.main(vae_cfg(clips, tmp_path_factory.mktemp("vae") / "run"))


@pytest.fixture(scope="module")
def cache(clips, vae_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache")
    return build_cache(
        clips, vae_run, out, shard_size=4, buckets=BUCKETS, crop="center", caption="random", **SHAPE
    )


def dit_cfg(cache: Path, vae_run: Path, out: Path, steps: int = 4) -> DiTTrainConfig:
    return apply_overrides(
        DiTTrainConfig(dit=TINY_DIT),
        [
            f"cache={cache}",
            f"vae={vae_run}",
            *loop(out, steps),
            "sample_prompts=[the camera pans right over hilly terrain seen from above]",
        ],
    )


def test_footage_and_clips_are_mixed_real_video(clips):
    df = pd.read_parquet(clips)
    assert len(df) >= 12 and set(df["cut"]) <= {"copy", "reencode"}
    assert {(h, w) for h, w in zip(df["height"], df["width"])} == {(36, 64), (64, 36), (48, 48)}
    assert all(len(c) == 3 for c in df["captions"]) and df["text"].str.contains("camera").all()
    frames = ClipWindowDataset(clips, num_frames=5, height=32, width=32, fps=8).frames(0)
    assert frames.std() > 20  # textured photograph / terrain, not a flat background


def test_vae_trains_on_one_shape_batches_within_the_budget(clips, tmp_path, monkeypatch):
    seen = []
    real = train_vae.load_batch

    def recording(dataset, indices, step):
        x = real(dataset, indices, step)
        seen.append(tuple(x.shape))
        return x

    monkeypatch.setattr(train_vae, "load_batch", recording)
    run = train_vae.main(vae_cfg(clips, tmp_path / "vae", steps=8))
    budget = 4 * tokens_of((5, 32, 32))
    assert len({s[2:] for s in seen}) > 1  # several bucket shapes were trained on
    for b, _, t, h, w in seen:
        assert (t, h, w) in BUCKETS and b * tokens_of((t, h, w)) <= budget
    for name in ("model.safetensors", "eval.json", "samples/final.gif"):
        assert (run / name).is_file(), name
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) == 8


def test_bucketed_training_clips_see_every_clip_once_per_epoch(clips):
    d = DataConfig(str(clips), **SHAPE, fps=8, in_memory=False, buckets=tuple(BUCKETS))
    data = training_clips(d, TrainConfig(batch_size=4, seed=2))
    n = len(data.batches)
    epoch = [i for step in range(n) for i in data.batches.batch_at(step)]
    assert sorted(epoch) == list(range(len(data.clips)))
    assert data.batches.batch_at(n) == data.batches.batches(1)[0]  # the next epoch, reshuffled
    shapes = {tuple(data.clips[i]["video"].shape[1:]) for i in range(len(data.clips))}
    assert shapes <= set(BUCKETS) and len(shapes) > 1
    assert tuple(data.view[0]["video"].shape[1:]) == (5, 32, 32)  # calibration/GIF view


def test_multi_shape_cache_and_batches(cache):
    c = LatentCache(cache)
    meta = json.loads((cache / "meta.json").read_text())
    assert len(c.shapes) > 1 and set(c.shapes) <= set(BUCKETS) and meta["dropped"] == 0
    assert c.latent_shape == (4, 2, 4, 4)  # the default 5x32x32 shape
    assert sorted(c.index.tolist()) == list(range(meta["rows"]))  # every clip cached once
    sampler = c.bucket_sampler(batch_size=4, seed=0)
    for batch in sampler.batches(0):
        z, text, mask = c.batch(batch, torch.Generator().manual_seed(0))
        ((t, h, w),) = {sampler.buckets[sampler.bucket_of[i]] for i in batch}  # one shape
        assert z.shape == (len(batch), 4, 1 + (t - 1) // 4, h // 8, w // 8)
        assert len(batch) * tokens_of((t, h, w)) <= 4 * tokens_of((5, 32, 32))
    mixed = [int(np.flatnonzero(c.group_of == g)[0]) for g in range(2)]
    with pytest.raises(ValueError, match="one latent shape"):
        c.batch(mixed, torch.Generator())


def test_dit_trains_on_mixed_shapes_and_resumes_exactly(cache, vae_run, tmp_path, monkeypatch):
    whole = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "whole", steps=6))
    assert (whole / "samples/final.gif").is_file() and (whole / "pipeline/pipeline.yaml").is_file()
    losses = [json.loads(x)["loss"] for x in (whole / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)

    class Killed(Exception):
        pass

    real = LatentCache.batch

    def dying(self, indices, generator, text_dropout=0.0):
        if dying.calls == 4:  # the 5th step, after the checkpoint at step 4
            raise Killed
        dying.calls += 1
        return real(self, indices, generator, text_dropout)

    dying.calls = 0
    monkeypatch.setattr(LatentCache, "batch", dying)
    with pytest.raises(Killed):
        train_dit.main(dit_cfg(cache, vae_run, tmp_path / "killed", steps=6))
    monkeypatch.undo()
    resumed = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "killed", steps=6), resume=True)
    a, b = (
        load_file(str(whole / "model.safetensors")),
        load_file(str(resumed / "model.safetensors")),
    )
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_clips_no_bucket_holds_are_an_error_or_logged(clips, vae_run, tmp_path, capsys):
    too_long = [(9, 32, 64), (9, 32, 32)]  # the short shots hold fewer than 9 frames at 8 fps
    with pytest.raises(ValueError, match="fit no bucket"):
        build_cache(clips, vae_run, tmp_path / "a", buckets=too_long, crop="center", **SHAPE)
    out = build_cache(
        clips, vae_run, tmp_path / "b", buckets=[*too_long, (9, 64, 64)], unfit="drop", **SHAPE
    )
    log = capsys.readouterr().out
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dropped"] > 0 and f"{meta['dropped']} samples fit no bucket" in log
    assert "bucket (9, 64, 64): 0 samples  (empty: no sample fits it)" in log
    assert len(LatentCache(out)) == meta["rows"] == len(pd.read_parquet(clips)) - meta["dropped"]


def test_cache_keeps_every_caption_and_training_draws_among_them(cache, clips, vae_run, tmp_path):
    c = LatentCache(cache)
    assert c.num_captions.tolist() == [3] * len(c)
    i = int(np.flatnonzero(c.group_of == 0)[0])
    options = c.captions[c.first_caption[i] : c.first_caption[i] + 3]
    drawn = set()
    for seed in range(12):
        _, text, _ = c.batch([i], torch.Generator().manual_seed(seed))
        match = [k for k in range(3) if torch.equal(text[0], options[k])]
        assert len(match) == 1  # always one of the clip's own captions
        drawn.add(match[0])
    assert drawn == {0, 1, 2}
    plain = pd.read_parquet(clips).drop(columns=["captions"])
    plain.to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match="captions"):
        build_cache(tmp_path / "plain.parquet", vae_run, tmp_path / "c", caption="random", **SHAPE)
