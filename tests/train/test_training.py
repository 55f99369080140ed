"""Training loops: exact resume after a kill, NaN guard, run-directory contents, cache, export."""

import importlib.util
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from nanosora.config import (
    ConfigError,
    DiTConfig,
    DiTTrainConfig,
    TextEncoderConfig,
    VAEConfig,
    VAETrainConfig,
    apply_overrides,
)
from nanosora.data.cache import LatentCache, build_cache
from nanosora.data.grounding import build_grounding
from nanosora.models.text_encoder import load_text_encoder, split_clauses
from nanosora.pipeline import Pipeline, load_vae, load_weights
from nanosora.shapes.scenes import generate_scenes
from nanosora.shapes.world import generate_dataset
from nanosora.train import dit as train_dit
from nanosora.train import vae as train_vae
from nanosora.train.checkpoint import NonFiniteLossError, RunDir

TINY_VAE = VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4)
TINY_DIT = DiTConfig(in_channels=4, dim=32, depth=2, heads=2)
SIZE = {"num_frames": 9, "height": 32, "width": 32}  # small clips keep these tests fast


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root, 12, seed=5, progress=False)
    return root / "manifest.parquet"


def vae_cfg(data, out, steps=6, **over):
    cfg = VAETrainConfig(vae=TINY_VAE)
    items = [
        f"data.manifest={data}",
        f"train.out_dir={out}",
        f"train.steps={steps}",
        "train.batch_size=4",
        "train.ckpt_every=3",
        "train.log_every=1",
        "train.sample_every=0",
        "optim.warmup_steps=2",
        "data.num_frames=9",
        "data.height=32",
        "data.width=32",
        "loss.object_weight=4.0",  # the shapes recipe's object weighting
    ]
    return apply_overrides(cfg, items + [f"{k}={v}" for k, v in over.items()])


@pytest.fixture(scope="module")
def vae_run(data, tmp_path_factory):
    return train_vae.main(vae_cfg(data, tmp_path_factory.mktemp("vae") / "run"))


@pytest.fixture(scope="module")
def cache(data, vae_run, tmp_path_factory):
    return build_cache(data, vae_run, tmp_path_factory.mktemp("cache"), shard_size=5, **SIZE)


def dit_cfg(cache, vae_run, out, steps=6):
    return apply_overrides(
        DiTTrainConfig(dit=TINY_DIT),
        [
            f"cache={cache}",
            f"vae={vae_run}",
            f"train.out_dir={out}",
            f"train.steps={steps}",
            "train.batch_size=4",
            "train.ckpt_every=3",
            "train.log_every=1",
            "train.sample_every=0",
            "optim.warmup_steps=2",
            "sample_prompts=[a red circle moving left]",
        ],
    )


class Killed(Exception):
    pass


def kill_at(monkeypatch, module, step):
    """Make the loop die while computing ``step`` (after the checkpoint before it)."""
    real = module.batch_indices

    def dying(n, batch_size, s, seed):
        if s == step:
            raise Killed
        return real(n, batch_size, s, seed)

    monkeypatch.setattr(module, "batch_indices", dying)


def assert_same_weights(a, b):
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0, msg=k)


def test_vae_run_directory(vae_run):
    for name in (
        "config.yaml",
        "model.safetensors",
        "ema.safetensors",
        "state.pt",
        "metrics.jsonl",
        "env.json",
        "loss.png",
        "eval.json",
        "samples/final.gif",
    ):
        assert (vae_run / name).is_file(), name
    metrics = [json.loads(x) for x in (vae_run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4, 5, 6]
    ev = json.loads((vae_run / "eval.json").read_text())
    assert set(ev["probe"]) == {"color", "shape", "direction", "all"} and math.isfinite(ev["psnr"])
    vae = load_vae(vae_run)
    assert not torch.allclose(vae.latent_std, torch.ones_like(vae.latent_std))  # calibrated


def test_vae_resume_after_kill_is_exact(data, tmp_path, monkeypatch):
    whole = train_vae.main(vae_cfg(data, tmp_path / "whole"))
    kill_at(monkeypatch, train_vae, 4)
    with pytest.raises(Killed):
        train_vae.main(vae_cfg(data, tmp_path / "killed"))
    assert torch.load(tmp_path / "killed/state.pt", weights_only=False)["step"] == 3
    monkeypatch.undo()
    resumed = train_vae.main(vae_cfg(data, tmp_path / "killed"), resume=True)
    assert_same_weights(whole, resumed)
    steps = [json.loads(x)["step"] for x in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps[:6] == [1, 2, 3, 4, 5, 6]  # no duplicated lines from the killed attempt


def test_vae_paused_at_stop_at_resumes_exactly(data, tmp_path):
    whole = train_vae.main(vae_cfg(data, tmp_path / "whole"))
    paused = train_vae.main(vae_cfg(data, tmp_path / "paused", **{"train.stop_at": 4}))
    assert torch.load(paused / "state.pt", weights_only=False)["step"] == 4
    assert not (paused / "eval.json").exists()  # no final weights or metrics at a pause
    resumed = train_vae.main(vae_cfg(data, tmp_path / "paused"), resume=True)
    assert (resumed / "eval.json").is_file()
    assert_same_weights(whole, resumed)


def lrs(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m["lr"] for m in lines if "lr" in m}


def test_resume_with_fewer_steps_cools_down(data, vae_run, tmp_path):
    """--resume train.steps=M on a paused longer run: the lr follows the long schedule up to the
    pause, then where an M-step run would be, and the run ends annealed at step M."""
    paused = train_vae.main(vae_cfg(data, tmp_path / "cut", **{"train.stop_at": 3}))
    cut = train_vae.main(vae_cfg(data, paused, steps=5), resume=True)
    short = train_vae.main(vae_cfg(data, tmp_path / "short", steps=5))
    assert torch.load(cut / "state.pt", weights_only=False)["step"] == 5
    long, got, want = lrs(vae_run), lrs(cut), lrs(short)
    assert [got[s] for s in (1, 2, 3)] == [long[s] for s in (1, 2, 3)]
    assert [got[s] for s in (4, 5)] == pytest.approx([want[s] for s in (4, 5)])
    assert got[4] < long[4]  # the drop
    assert (cut / "eval.json").is_file()  # a finished run: final weights and metrics


def test_existing_run_needs_resume(data, vae_run):
    with pytest.raises(FileExistsError, match="--resume"):
        train_vae.main(vae_cfg(data, vae_run))


def test_nan_loss_stops_with_a_checkpoint(data, tmp_path, monkeypatch):
    real = train_vae.vae_loss

    def poisoned(*args):
        loss, parts = real(*args)
        return loss * float("nan"), parts

    monkeypatch.setattr(train_vae, "vae_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 0.*--resume"):
        train_vae.main(vae_cfg(data, tmp_path / "nan"))
    assert RunDir(tmp_path / "nan").exists()


def test_cache_contents(cache, data):
    c = LatentCache(cache)
    assert len(c) == 12 and c.latent_shape == (4, 3, 4, 4)
    assert len(json.loads((cache / "meta.json").read_text())["shards"]) == 3
    z, text, mask = c.batch([0, 1, 2], torch.Generator().manual_seed(0))
    assert z.shape == (3, 4, 3, 4, 4) and text.shape[:2] == mask.shape and mask[:, 0].all()
    assert c.text.dtype == torch.float16 and text.dtype == torch.float32  # half in memory
    # The null prompt replaces text for dropped rows.
    _, t2, m2 = c.batch([0, 1, 2], torch.Generator().manual_seed(0), text_dropout=1.0)
    assert torch.equal(m2, c.null_mask.expand_as(m2))


def test_cache_resumes_missing_shard(cache, data, vae_run):
    before = load_file(str(cache / "shard-00001.safetensors"))
    (cache / "shard-00001.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001"):
        LatentCache(cache)
    build_cache(data, vae_run, cache, shard_size=5, **SIZE)
    after = load_file(str(cache / "shard-00001.safetensors"))
    torch.testing.assert_close(after["mean"], before["mean"])


def test_text_layers_from_cache_to_pipeline(data, vae_run, tmp_path):
    """A cache of two concatenated text layers trains a DiT only with the same text section
    (same width is not enough), and its pipeline encodes prompts the same way."""
    two = TextEncoderConfig(layers=(-1, 0))
    cache = build_cache(data, vae_run, tmp_path / "cache", two, shard_size=12, **SIZE)
    assert LatentCache(cache).text.shape[-1] == 768
    assert json.loads((cache / "meta.json").read_text())["text"]["layers"] == [-1, 0]
    cfg = apply_overrides(dit_cfg(cache, vae_run, tmp_path / "a", steps=1), ["dit.text_dim=768"])
    with pytest.raises(ValueError, match="holds text features"):
        train_dit.main(cfg)
    run = train_dit.main(apply_overrides(cfg, ["text.layers=[-1,0]", f"train.out_dir={tmp_path / 'b'}"]))  # fmt: skip
    pipe = Pipeline.load(run / "pipeline")
    assert pipe.text_encoder.cfg.layers == (-1, 0) and pipe.text_encoder.dim == 768
    assert pipe.generate(["a red circle moving left"], steps=2).shape[0] == 1


def test_dit_resume_after_kill_is_exact(cache, vae_run, tmp_path, monkeypatch):
    whole = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "whole"))
    assert (whole / "pipeline/pipeline.yaml").is_file() and (whole / "samples/final.gif").is_file()
    kill_at(monkeypatch, train_dit, 5)
    with pytest.raises(Killed):
        train_dit.main(dit_cfg(cache, vae_run, tmp_path / "killed"))
    monkeypatch.undo()
    # The killed run's last checkpoint exports as a pipeline (as a running one's would).
    snapshot, out = train_dit.export(tmp_path / "killed")
    ema = load_weights(tmp_path / "killed")
    assert all(torch.equal(v, ema[k]) for k, v in snapshot.state_dict().items())
    step = train_dit.checkpoint_step(tmp_path / "killed")
    assert 0 < step <= 5 and out == tmp_path / f"killed/snapshots/step_{step:06d}"
    assert Pipeline.load(out).generate(["a red circle"], steps=1).ndim == 5
    with pytest.raises(FileNotFoundError, match="not a DiT run"):
        train_dit.export(tmp_path, tmp_path / "nothing")
    resumed = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "killed"), resume=True)
    assert_same_weights(whole, resumed)


def test_dit_paused_at_stop_at_resumes_exactly(cache, vae_run, tmp_path):
    """train.stop_at pauses with a checkpoint and no final export; the schedule still spans
    train.steps, so resuming to the end gives the uninterrupted run's weights."""
    whole = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "whole"))
    cfg = dit_cfg(cache, vae_run, tmp_path / "paused")
    paused = train_dit.main(apply_overrides(cfg, ["train.stop_at=4"]))
    assert train_dit.checkpoint_step(paused) == 4 and not (paused / "pipeline").exists()
    resumed = train_dit.main(cfg, resume=True)
    assert train_dit.checkpoint_step(resumed) == 6 and (resumed / "pipeline").is_dir()
    assert_same_weights(whole, resumed)


def test_dit_logs_a_validation_loss_that_its_pipeline_reproduces(cache, vae_run, tmp_path):
    cfg = dit_cfg(cache, vae_run, tmp_path / "val")
    run = train_dit.main(apply_overrides(cfg, [f"val_cache={cache}", "val_every=4", "val_clips=7"]))
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in val] == [4, 6]  # every 4 steps and once at the end
    levels = [f"val_loss_s{s:g}" for s in train_dit.VAL_LEVELS]
    assert all(0 < r[k] < 10 for r in val for k in ["val_loss", *levels])
    # The logged loss is the final EMA weights' (the pipeline's) on the same seeded inputs.
    again = train_dit.level_losses(Pipeline.load(run / "pipeline").dit, LatentCache(cache), 7)
    got, logged = [again[s] for s in train_dit.VAL_LEVELS], [val[-1][k] for k in levels]
    assert got == pytest.approx(logged, rel=1e-4)  # float rounding only
    assert abs(val[0]["val_loss"] - val[1]["val_loss"]) > 1e-3  # the weights changed between
    with pytest.raises(ConfigError, match="val_clips=0"):
        apply_overrides(cfg, ["val_clips=0"])


def test_dit_keeps_snapshots_of_its_ema_weights(cache, vae_run, tmp_path):
    cfg = apply_overrides(dit_cfg(cache, vae_run, tmp_path / "snap"), ["snapshot_every=2"])
    run = train_dit.main(cfg)
    assert sorted(p.name for p in (run / "snapshots").iterdir()) == [  # no temporary left
        "step_000002",
        "step_000004",
        "step_000006",
    ]
    last = load_file(str(run / "snapshots/step_000006/transformer/model.safetensors"))
    final = load_file(str(run / "pipeline/transformer/model.safetensors"))
    assert all(torch.equal(v, final[k]) for k, v in last.items())
    first = load_file(str(run / "snapshots/step_000002/transformer/model.safetensors"))
    assert any(not torch.equal(v, final[k]) for k, v in first.items())
    assert (
        Pipeline.load(run / "snapshots/step_000002").generate(["a red circle"], steps=1).ndim == 5
    )
    # The compute plot's validation loss of a snapshot: level_losses' mean, kept beside it.
    spec = importlib.util.spec_from_file_location(
        "plot", Path(__file__).parents[2] / "scripts/scenes_compute_plot.py"
    )
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    losses = train_dit.level_losses(Pipeline.load(run / "pipeline").dit, LatentCache(cache), 5)
    snapshot = run / "snapshots/step_000006"
    assert plot.snapshot_val_loss(snapshot, cache, 5) == pytest.approx(
        sum(losses.values()) / len(losses), rel=1e-6
    )
    kept = json.loads((snapshot / "val_loss.json").read_text())
    (snapshot / "val_loss.json").write_text(json.dumps({**kept, "mean": -1.0}))
    assert plot.snapshot_val_loss(snapshot, cache, 5) == -1.0  # read back, not computed again
    assert plot.snapshot_val_loss(snapshot, cache, 4) > 0  # another clip count: computed
    label, points = plot.val_points(run, cache, 4)
    assert [round(f / points[0][0]) for f, _ in points] == [1, 2, 3]  # steps 2, 4, 6
    assert label.startswith("snap:") and len({v for _, v in points}) == 3


def test_dit_loss_falls(cache, vae_run, tmp_path):
    run = train_dit.main(
        apply_overrides(
            dit_cfg(cache, vae_run, tmp_path / "fit", steps=80),
            ["optim.lr=3e-3", "flow.text_dropout=0.0"],
        )
    )
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_init_from_and_mismatch(cache, vae_run, tmp_path):
    base = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "base", steps=3))
    tuned = train_dit.main(
        apply_overrides(
            dit_cfg(cache, vae_run, tmp_path / "tuned", steps=1),
            [f"init_from={base / 'pipeline'}", "optim.lr=1e-12"],
        )
    )
    a = load_file(str(base / "ema.safetensors"))["out.weight"]
    b = load_file(str(tuned / "model.safetensors"))["out.weight"]
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="do not match"):
        train_dit.main(
            apply_overrides(
                dit_cfg(cache, vae_run, tmp_path / "bad", steps=1),
                [f"init_from={base}", "dit.depth=3"],
            )
        )
    # Settings without parameters pass the shape check; the source's config catches them.
    for source in (base, base / "pipeline"):
        with pytest.raises(ValueError, match=r"other dit\.\* settings.*dit\.abs_pos=False there"):
            train_dit.main(
                apply_overrides(
                    dit_cfg(cache, vae_run, tmp_path / "abs", steps=1),
                    [f"init_from={source}", "dit.abs_pos=true"],
                )
            )


def test_checkpoint_of_another_preset_is_a_clear_error(data, vae_run, cache, tmp_path):
    """Resuming or starting from weights of another model names what differs (no raw
    load_state_dict traceback) and leaves the run directory as it was."""
    run = tmp_path / "vae"
    shutil.copytree(vae_run, run)
    before = (run / "config.yaml").read_text()
    wider = {"vae.base_channels": 16}
    with pytest.raises(ValueError, match=r"do not match this model.*other shapes.*saved \(8,"):
        train_vae.main(vae_cfg(data, run, steps=8, **wider), resume=True)
    assert (run / "config.yaml").read_text() == before
    with pytest.raises(ValueError, match="init_from=.*do not match this model.*other shapes"):
        train_vae.main(vae_cfg(data, tmp_path / "new", steps=1, init_from=vae_run, **wider))
    dit = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "dit", steps=1))
    with pytest.raises(ValueError, match="do not match this model.*other shapes"):
        train_dit.main(
            apply_overrides(dit_cfg(cache, vae_run, dit, steps=2), ["dit.dim=64"]), resume=True
        )


def test_vae_decoder_only_finetune_keeps_latents(data, vae_run, tmp_path):
    """train_encoder=false: encoder weights and latent statistics are bit-identical after
    fine-tuning, so a DiT trained on the old latents stays valid; the decoder moves."""
    tuned = train_vae.main(
        vae_cfg(data, tmp_path / "dec", steps=3, init_from=vae_run, train_encoder=False)
    )
    before, after = (
        load_file(str(vae_run / "ema.safetensors")),
        load_file(str(tuned / "ema.safetensors")),
    )
    enc = [k for k in before if k.startswith("encoder.") or k.startswith("latent_")]
    dec = [k for k in before if k.startswith("decoder.")]
    assert enc and dec
    for k in enc:
        assert torch.equal(before[k], after[k]), k
    assert any(not torch.equal(before[k], after[k]) for k in dec)
    with pytest.raises(ValueError, match="needs init_from"):
        train_vae.main(vae_cfg(data, tmp_path / "bad", steps=1, train_encoder=False))


def test_vae_trains_on_short_windows_and_evaluates_at_eval_frames(data, tmp_path, monkeypatch):
    """data.num_frames=5 random windows for the steps; calibration and the final evaluation
    read whole 9-frame clips (eval_frames), the length the DiT's cache will encode."""
    seen: dict[str, set[int]] = {"train": set(), "calibrate": set(), "eval": set()}

    def spy(name, fn, clips_at):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            seen[name].add(clips_at(args, out))
            return out

        return wrapped

    monkeypatch.setattr(
        train_vae, "load_batch", spy("train", train_vae.load_batch, lambda a, x: x.shape[2])
    )
    for name, module, fn in (
        ("calibrate", train_vae, "calibrate"),
        ("eval", train_vae, "reconstruction_metrics"),
    ):
        monkeypatch.setattr(
            module, fn, spy(name, getattr(module, fn), lambda a, out: a[1][0]["video"].shape[1])
        )
    over = {"data.num_frames": 5, "data.window": "random", "eval_frames": 9, "val_manifest": data}
    run = train_vae.main(vae_cfg(data, tmp_path / "short", steps=3, **over))
    assert seen == {"train": {5}, "calibrate": {9}, "eval": {9}}
    assert json.loads((run / "eval.json").read_text())["clips"] > 0
    with pytest.raises(ConfigError, match="eval_frames=8"):
        vae_cfg(data, tmp_path / "bad", eval_frames=8)


def test_vae_trains_on_random_crops_and_evaluates_whole_frames(data, tmp_path, monkeypatch):
    """crop=16: each step's clips are 16x16 crops of the 32x32 frames; evaluation reads whole
    frames. Bad sizes fail when the config is read."""
    sizes: dict[str, set[tuple[int, int]]] = {"train": set(), "eval": set()}
    crops, metrics = train_vae.random_crops, train_vae.reconstruction_metrics

    def crop_spy(*args):
        out = crops(*args)
        sizes["train"].add(tuple(out.shape[3:]))
        return out

    def eval_spy(vae, clips):
        sizes["eval"].add(tuple(clips[0]["video"].shape[2:]))
        return metrics(vae, clips)

    monkeypatch.setattr(train_vae, "random_crops", crop_spy)
    monkeypatch.setattr(train_vae, "reconstruction_metrics", eval_spy)
    run = train_vae.main(vae_cfg(data, tmp_path / "crop", steps=3, crop=16, val_manifest=data))
    assert sizes == {"train": {(16, 16)}, "eval": {(32, 32)}}
    assert json.loads((run / "eval.json").read_text())["psnr"] > 0
    with pytest.raises(ConfigError, match="crop=12"):
        vae_cfg(data, tmp_path / "bad", crop=12)


def test_random_crops_split_over_ranks_like_one_process():
    """Offsets are drawn for the whole batch: two ranks' rows crop as one process crops them."""
    x = torch.arange(4 * 8 * 8, dtype=torch.float32).view(4, 1, 1, 8, 8)
    whole = train_vae.random_crops(x, 4, 4, slice(None), torch.Generator().manual_seed(0))
    half = train_vae.random_crops(x[2:], 4, 4, slice(2, 4), torch.Generator().manual_seed(0))
    assert torch.equal(whole[2:], half)
    for clip, crop in zip(x, whole):  # each crop is a window of its own clip
        windows = clip.unfold(2, 4, 1).unfold(3, 4, 1).reshape(-1, 4, 4)
        assert any(torch.equal(w, crop[0, 0]) for w in windows)


def test_content_crops_hold_small_objects_and_split_over_ranks():
    """crop_content: 16x16 crops of 32x32 frames with a 6x6 object hold most of it (uniform
    positions: about a third, and nothing at all half the time); ranks still crop as one
    process."""
    x = torch.full((64, 3, 2, 32, 32), -1.0)
    corners = torch.randint(0, 27, (64, 2), generator=torch.Generator().manual_seed(1))
    for clip, (i, j) in zip(x, corners.tolist()):
        clip[..., i : i + 6, j : j + 6] = 0.8
    share, empty = {}, {}
    for content in (False, True):
        gen = torch.Generator().manual_seed(0)
        crops = train_vae.random_crops(x, 16, 64, slice(None), gen, content)
        held = (crops > 0).sum(dim=(1, 2, 3, 4)) / (3 * 2 * 36)  # share of the object inside
        share[content], empty[content] = held.mean().item(), (held == 0).float().mean().item()
    assert share[True] >= 0.85 > 0.5 > share[False]
    assert empty[True] <= 0.05 < 0.3 < empty[False]
    one = train_vae.random_crops(x[:8], 16, 8, slice(None), torch.Generator().manual_seed(3), True)
    two = train_vae.random_crops(x[4:8], 16, 8, slice(4, 8), torch.Generator().manual_seed(3), True)
    assert torch.equal(one[4:], two)
    mass = train_vae.crop_content_mass(x[:1], 16)
    assert mass.shape == (1, 17, 17)
    top, left = divmod(int(mass.argmax()), 17)  # the fullest crop holds the whole object
    assert (x[0, 0, 0, top : top + 16, left : left + 16] > 0).sum() == 36


class FramePredictor(torch.nn.Module):
    """Predicts 0 everywhere but ``bump`` on the first latent frame; records the levels it got."""

    def __init__(self, bump):
        super().__init__()
        self.bump, self.levels = bump, None
        self.unused = torch.nn.Parameter(torch.zeros(1))  # the loss reads the model's device

    def forward(self, z, s, text, mask):
        self.levels = s
        out = torch.zeros_like(z)
        out[:, :, 0] = self.bump
        return out


def test_frame_mask_loss_ignores_given_frames():
    x0, text = torch.randn(6, 4, 3, 4, 4), torch.randn(6, 5, 384)
    mask = torch.ones(6, 5, dtype=torch.bool)

    def loss(cond_prob, bump):
        cfg = apply_overrides(
            DiTTrainConfig(dit=TINY_DIT), [f"flow.cond_prob={cond_prob}", "train.bf16=false"]
        )
        model = FramePredictor(bump)
        value = train_dit.flow_loss(model, x0, text, mask, cfg, torch.Generator().manual_seed(0))
        return value, model.levels

    given, levels = loss(1.0, 0.0)
    assert levels.shape == (6, 3) and levels[:, 0].eq(0).all()  # frame 0 always given
    assert torch.equal(loss(1.0, 100.0)[0], given)  # its prediction is not scored
    assert loss(0.0, 100.0)[0] > 10 * loss(0.0, 0.0)[0]  # without masks it is


@pytest.mark.parametrize("patch_t", [1, 2])  # 2: frames paired in patches, as the scenes recipe's
def test_dit_trains_with_frame_masks_and_images(cache, vae_run, tmp_path, patch_t):
    run = train_dit.main(
        apply_overrides(
            dit_cfg(cache, vae_run, tmp_path / "masks", steps=4),
            ["flow.cond_prob=0.5", "flow.image_prob=0.5", f"dit.patch_t={patch_t}"],
        )
    )
    losses = [
        json.loads(line)["loss"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"loss"' in line
    ]
    assert len(losses) >= 4 and all(math.isfinite(v) for v in losses)


def test_clause_cache_from_another_caches_latents_to_pipeline(data, vae_run, cache, tmp_path):
    """``latents_from`` copies latents and encodes only the text (here with clause tokens);
    a DiT trained on it encodes prompts with the same clause tokens; a cache of other shards or
    another VAE is refused."""
    text = TextEncoderConfig(clauses=3)
    other = build_cache(data, vae_run, tmp_path / "c", text, shard_size=5, latents_from=cache, **SIZE)  # fmt: skip
    a, b = LatentCache(cache), LatentCache(other)
    assert torch.equal(a.means[0], b.means[0]) and torch.equal(a.stds[0], b.stds[0])
    texts = pq.read_table(data, columns=["text"]).column("text").to_pylist()
    clauses = torch.tensor([min(3, len(split_clauses(texts[i]))) for i in b.index])
    assert torch.equal(b.mask.sum(1), a.mask.sum(1) + clauses) and clauses.min() >= 1
    with pytest.raises(ValueError, match="is the cache being written"):
        build_cache(data, vae_run, cache, text, shard_size=5, latents_from=cache, **SIZE)
    with pytest.raises(ValueError, match="other shards than this build"):
        build_cache(data, vae_run, tmp_path / "d", text, shard_size=4, latents_from=cache, **SIZE)  # fmt: skip
    with pytest.raises(ValueError, match="was built from vae"):
        vae_copy = shutil.copytree(vae_run, tmp_path / "vae")
        build_cache(data, vae_copy, tmp_path / "e", text, shard_size=5, latents_from=cache, **SIZE)  # fmt: skip
    cut_at_relations = ["text.clauses=3", "text.clause_split=relations"]  # not how it was built
    with pytest.raises(ValueError, match="'clause_split': 'conjunctions'.*build the cache with"):
        train_dit.main(apply_overrides(dit_cfg(other, vae_run, tmp_path / "x", steps=1), cut_at_relations))  # fmt: skip
    run = train_dit.main(apply_overrides(dit_cfg(other, vae_run, tmp_path / "r", steps=1), ["text.clauses=3"]))  # fmt: skip
    pipe = Pipeline.load(run / "pipeline")
    assert pipe.text_encoder.cfg.clauses == 3
    _, mask = pipe.text_encoder(["a red circle and a blue square"])
    _, words = load_text_encoder(TextEncoderConfig())(["a red circle and a blue square"])
    assert int(mask.sum()) == int(words.sum()) + 2


def test_dit_trains_with_the_grounding_loss_on_a_scenes_cache(vae_run, tmp_path):
    data = generate_scenes(tmp_path / "scenes", 8, ("attributes", "spatial"), seed=2, progress=False)  # fmt: skip
    cache = build_cache(data / "manifest.parquet", vae_run, tmp_path / "cache", num_frames=17,
                        height=32, width=32, shard_size=5)  # fmt: skip
    base = apply_overrides(
        dit_cfg(cache, vae_run, tmp_path / "g", steps=3), ["flow.ground_weight=1"]
    )
    with pytest.raises(FileNotFoundError, match="nanosora ground .* --patch 2"):
        train_dit.main(base)
    build_grounding(cache, patch_hw=4, progress=False)
    with pytest.raises(
        ValueError, match="built for patches of 4 latent cells.*rebuild with --patch 2"
    ):
        train_dit.main(base)
    build_grounding(cache, patch_hw=2, progress=False)
    targets = np.load(Path(cache) / "grounding.npy")
    assert targets.shape[0] == 8 and targets.shape[2:] == (LatentCache(cache).latent_shape[1], 2, 2)
    run = train_dit.main(apply_overrides(base, ["flow.cond_prob=0.5", "dit.patch_t=2"]))
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "ground" in x]
    assert len(logged) == 3
    for x in logged:  # the logged loss is the flow term plus the weighted grounding term
        assert 0 < x["ground"] < 1 and x["loss"] == pytest.approx(x["flow"] + x["ground"], rel=1e-5)


def test_dit_draws_clips_by_category_weight(cache, vae_run, tmp_path, monkeypatch, capsys):
    weighted = ["category_weights=[single=2]", f"train.out_dir={tmp_path / 's'}"]
    with pytest.raises(ValueError, match="has no 'category' column"):  # a shapes-world cache
        train_dit.main(apply_overrides(dit_cfg(cache, vae_run, tmp_path / "s"), weighted))
    data = generate_scenes(tmp_path / "scenes", 8, ("attributes", "spatial"), seed=2, progress=False)  # fmt: skip
    cache = build_cache(data / "manifest.parquet", vae_run, tmp_path / "cache", num_frames=17,
                        height=32, width=32, shard_size=5)  # fmt: skip
    categories = LatentCache(cache).manifest_column("category")
    assert sorted(categories) == sorted(pd.read_parquet(data / "manifest.parquet")["category"])
    drawn = []
    real = train_dit.weighted_batch_indices

    def spy(*args):
        drawn.extend(real(*args))
        return drawn[-args[1] :]

    monkeypatch.setattr(train_dit, "weighted_batch_indices", spy)
    base = dit_cfg(cache, vae_run, tmp_path / "w", steps=4)
    run = train_dit.main(apply_overrides(base, ["category_weights=[spatial=0]"]))
    assert len(drawn) == 16 and {categories[i] for i in drawn} == {"attributes"}
    paused = apply_overrides(
        base, ["category_weights=[spatial=0]", f"train.out_dir={tmp_path / 'p'}", "train.stop_at=2"]
    )
    train_dit.main(paused)
    resumed = train_dit.main(apply_overrides(paused, ["train.stop_at=0"]), resume=True)
    assert_same_weights(run, resumed)  # the weighted draws of a resumed run are the same
    assert (
        run.is_dir()
        and "clips drawn by category: attributes 100.0%, spatial 0.0%" in capsys.readouterr().out
    )
    with pytest.raises(ValueError, match="no clip of .* has category \\['motion'\\]"):
        train_dit.main(apply_overrides(base, ["category_weights=[motion=2]", f"train.out_dir={tmp_path / 'm'}"]))  # fmt: skip


def test_dit_trains_with_muon_and_resumes_exactly(cache, vae_run, tmp_path):
    base = dit_cfg(cache, vae_run, tmp_path / "muon", steps=4)
    muon = ["optim.kind=muon", "optim.lr=0.01"]
    run = train_dit.main(apply_overrides(base, muon))
    adamw = train_dit.main(apply_overrides(base, ["optim.lr=0.01", f"train.out_dir={tmp_path / 'a'}"]))  # fmt: skip
    wm, wa = load_file(str(run / "model.safetensors")), load_file(str(adamw / "model.safetensors"))
    # Muon moves the block matrices differently from AdamW; both start from the same weights
    assert not torch.equal(wm["blocks.0.attn.qkv.weight"], wa["blocks.0.attn.qkv.weight"])
    assert all(torch.isfinite(v).all() for v in wm.values())
    paused = apply_overrides(base, [*muon, f"train.out_dir={tmp_path / 'p'}", "train.stop_at=2"])
    train_dit.main(paused)
    resumed = train_dit.main(apply_overrides(paused, ["train.stop_at=0"]), resume=True)
    assert_same_weights(run, resumed)  # Muon's momentum is in the checkpoint
    wrong = apply_overrides(paused, ["optim.kind=adamw", "train.stop_at=0"])
    with pytest.raises(ValueError, match="optimizer state does not fit .* optim.kind"):
        train_dit.main(wrong, resume=True)


def test_image_batches_take_first_frames_of_their_own_size(cache, vae_run, tmp_path, monkeypatch):
    seen = []
    real = train_dit.flow_loss

    def spy(dit, x0, *args, **kwargs):
        seen.append(tuple(x0.shape))
        return real(dit, x0, *args, **kwargs)

    monkeypatch.setattr(train_dit, "flow_loss", spy)
    base = dit_cfg(cache, vae_run, tmp_path / "img", steps=8)
    train_dit.main(apply_overrides(base, ["flow.image_prob=0.5", "flow.image_batch=8"]))
    frames = LatentCache(cache).latent_shape[1]
    images = [s for s in seen if s[2] == 1]
    videos = [s for s in seen if s[2] == frames]
    # both kinds occur; images come 8 to a batch, videos train.batch_size (4) to a batch
    assert images and videos and len(images) + len(videos) == len(seen) == 8
    assert {s[0] for s in images} == {8} and {s[0] for s in videos} == {4}
    with pytest.raises(ConfigError, match="flow.image_batch"):
        apply_overrides(base, ["flow.image_batch=-1"])


def test_lora_finetune_saves_a_small_mergeable_adapter(cache, vae_run, tmp_path):
    base = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "base", steps=2))
    tuned = train_dit.main(
        apply_overrides(
            dit_cfg(cache, vae_run, tmp_path / "lora", steps=3),
            [f"init_from={base / 'pipeline'}", "lora.rank=2", "optim.lr=0.05"],
        )
    )
    adapter = load_file(str(tuned / "lora" / "adapter.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)
    base_weights = load_file(str(base / "pipeline" / "transformer" / "model.safetensors"))
    # Only the adapter trained: the frozen base tensors inside the LoRA run are unchanged.
    run_weights = load_file(str(tuned / "model.safetensors"))
    for k, v in base_weights.items():
        key = k.replace("blocks.0.attn.qkv.", "blocks.0.attn.qkv.base_layer.")
        if key in run_weights:
            torch.testing.assert_close(run_weights[key].float(), v.float(), atol=1e-3, rtol=0)
    n_adapter = sum(v.numel() for v in adapter.values())
    assert n_adapter < 0.5 * sum(v.numel() for v in base_weights.values())
    # The exported pipeline is the merge: base + adapter gives the same transformer.
    merged = Pipeline.load(tuned / "pipeline").dit.state_dict()
    applied = Pipeline.load(base / "pipeline", lora=tuned / "lora").dit.state_dict()
    for k in merged:
        torch.testing.assert_close(merged[k], applied[k], atol=2e-3, rtol=0)
    assert not torch.allclose(
        merged["blocks.0.attn.qkv.weight"], base_weights["blocks.0.attn.qkv.weight"].float()
    )


def test_lora_that_targets_nothing_fails_before_training(cache, vae_run, tmp_path):
    base = train_dit.main(dit_cfg(cache, vae_run, tmp_path / "base", steps=1))
    with pytest.raises(ValueError, match="match no linear layer"):
        train_dit.main(
            apply_overrides(
                dit_cfg(cache, vae_run, tmp_path / "lora", steps=1),
                [f"init_from={base / 'pipeline'}", "lora.rank=2", "lora.targets=[nothing]"],
            )
        )
    assert (
        not (tmp_path / "lora" / "metrics.jsonl").exists()
        or not (tmp_path / "lora" / "metrics.jsonl").read_text()
    )


@pytest.mark.parametrize("object_weight", [0.0, 4.0])
@pytest.mark.parametrize("cond_prob", [0.0, 0.6])
def test_flow_loss_shares_average_to_the_whole_batch(cond_prob, object_weight):
    """What data parallelism relies on: the losses of equal row shares (ranks or micro-batches)
    average to the whole batch's loss, with and without frame masks and object weights."""
    torch.manual_seed(0)
    dit = train_dit.VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2, text_dim=384))
    with torch.no_grad():
        dit.out.weight.normal_(0, 0.1)
    x0, text = torch.randn(8, 4, 3, 4, 4), torch.randn(8, 5, 384)
    mask = torch.ones(8, 5, dtype=torch.bool)
    cfg = apply_overrides(
        DiTTrainConfig(dit=TINY_DIT),
        [f"flow.cond_prob={cond_prob}", f"flow.object_weight={object_weight}", "train.bf16=false"],
    )
    x0[:, :, :, 1:3, 1:3] += 3.0  # an object on a plain background: the cells object_weight finds

    def loss(rows, c=cfg):
        return train_dit.flow_loss(dit, x0, text, mask, c, torch.Generator().manual_seed(3), rows)

    halves = (loss(slice(0, 4)) + loss(slice(4, 8))) / 2
    torch.testing.assert_close(halves, loss(slice(None)), rtol=1e-6, atol=0)
    if object_weight:  # the weighting is applied: the same draws give another loss
        plain = apply_overrides(cfg, ["flow.object_weight=0"])
        assert abs(loss(slice(None)) - loss(slice(None), plain)) > 1e-4


def test_pipeline_vocabulary_follows_the_training_sources(tmp_path):
    cases = {
        ("shapes",): "shapes",
        ("scenes",): "scenes",
        ("scenes", "shapes"): "scenes",
        ("scenes", "msrvtt"): "",
        ("webvid",): "",
    }
    for sources, vocabulary in cases.items():
        path = tmp_path / f"{'_'.join(sources)}.parquet"
        pd.DataFrame({"source": list(sources), "path": ["a.mp4"] * len(sources)}).to_parquet(path)
        assert train_dit.vocabulary_of(str(path)) == vocabulary, sources
    assert train_dit.vocabulary_of(str(tmp_path / "missing.parquet")) == ""
