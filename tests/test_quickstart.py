"""The whole path in one call, at a tiny budget: every stage runs and the report is complete."""

import json
import os
import time
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from nanosora import quickstart
from nanosora.cli import app
from nanosora.config import DiTTrainConfig, VAETrainConfig, load_config
from nanosora.generate import Pipeline
from nanosora.pipeline import load_vae


def test_quickstart_tiny_budget(tmp_path):
    report = quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    assert report == tmp_path / "report.html"
    data = json.loads((tmp_path / "report.json").read_text())
    for key in ("adherence_in_distribution", "adherence_heldout"):
        assert data["metrics"][key]["n"] in (24, 8)
        assert 0.0 <= data["metrics"][key]["joint"] <= 1.0
    assert "vae_heldout_psnr" in data["metrics"] and "vae_probe" in data["metrics"]
    html = report.read_text()
    assert html.count("data:image/gif;base64") == 32  # one video per eval prompt
    assert "data:image/png;base64" in html  # loss curves
    pipe = Pipeline.load(tmp_path / "model")  # usable as --model DIR/model
    # The model samples with the quickstart's steps and the report was made with them.
    assert pipe.cfg.steps == data["metrics"]["steps"] == quickstart.QUICK_STEPS
    assert pipe.generate(["a red circle moving left"], steps=2).shape == (1, 17, 64, 64, 3)
    # The model (float16) decodes with the VAE stage's weights, the ones the cache encoded with.
    trained = load_vae(tmp_path / "runs/vae").state_dict()
    shipped = pipe.vae.state_dict()
    assert set(shipped) == set(trained)
    for k, v in trained.items():
        assert torch.allclose(shipped[k].float(), v.float(), atol=1e-2), k
    meta = json.loads((tmp_path / "cache/meta.json").read_text())
    assert meta["latent_mean"] == trained["latent_mean"].tolist()
    # The run recorded its stages' minutes, and a second call finds every stage complete,
    # the report included, and keeps those minutes.
    first_run = json.loads((tmp_path / "timings.json").read_text())
    assert first_run["skipped"] == [] and set(first_run["minutes"]) == {"vae", "dit"}
    assert (
        yaml.safe_load((tmp_path / "runs/dit/config.yaml").read_text())["train"]["minutes"]
        == (first_run["minutes"]["dit"])
    )
    quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    again = json.loads((tmp_path / "timings.json").read_text())
    assert again["skipped"] == ["data", "vae", "cache", "dit", "eval"]
    assert again["minutes"] == first_run["minutes"]
    # The report is redone for other seeds or a model newer than it.
    assert quickstart._reported(tmp_path, 1) and not quickstart._reported(tmp_path, 2)
    pipeline_yaml = tmp_path / "runs/dit/pipeline/pipeline.yaml"
    later = (tmp_path / "report.json").stat().st_mtime + 1
    os.utime(pipeline_yaml, (later, later))
    assert not quickstart._reported(tmp_path, 1)


def test_budget_splits_the_time_left_after_the_overheads_to_come(tmp_path):
    overhead = {"vae": 10.0, "cache": 30.0, "dit": 5.0, "eval": 25.0}
    budget = quickstart.Budget(tmp_path / "plan.json", 900.0, overhead, start=time.time() - 100)
    # 800 s left, 70 s of overheads to come: the VAE gets its share of 730 s.
    share = quickstart.SHARES["vae"] / sum(quickstart.SHARES.values())
    vae = budget.minutes("vae", ["cache", "dit", "eval"])
    assert abs(vae - share * 730 / 60) < 0.01
    # The last training stage gets all that is left after its own and the eval's overheads.
    budget.start = time.time() - 500
    dit = budget.minutes("dit", ["eval"])
    assert abs(dit - (400 - 30) / 60) < 0.01
    # A stage already planned keeps its minutes (a resumed run keeps its schedule).
    budget.start = time.time() - 850
    assert budget.minutes("vae", []) == vae and budget.minutes("dit", ["eval"]) == dit
    # Past the deadline a stage still trains for a sliver of its share.
    late = quickstart.Budget(tmp_path / "late.json", 900.0, overhead, start=time.time() - 950)
    late_vae = late.minutes("vae", ["cache", "dit", "eval"])
    assert late_vae == round(0.05 * quickstart.SHARES["vae"] * 900 / 60, 4)


def test_vae_share_replaces_the_default_split(tmp_path):
    assert quickstart.shares_with(quickstart.SHARES, None) == quickstart.SHARES
    shares = quickstart.shares_with(quickstart.SHARES, 0.55)
    assert shares == {"vae": 0.55, "dit": pytest.approx(0.45)}
    overhead = {"vae": 10.0, "cache": 30.0, "dit": 5.0, "eval": 25.0}
    budget = quickstart.Budget(
        tmp_path / "plan.json", 900.0, overhead, start=time.time() - 100, shares=shares
    )
    assert abs(budget.minutes("vae", ["cache", "dit", "eval"]) - 0.55 * 730 / 60) < 0.01
    for bad in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="vae_share"):
            quickstart.shares_with(quickstart.SHARES, bad)
    # The command line fails cleanly, before any stage runs.
    result = CliRunner().invoke(
        app, ["quickstart", "--workdir", str(tmp_path / "q"), "--vae-share", "1.5"]
    )
    assert result.exit_code != 0 and "vae_share" in result.output
    assert not (tmp_path / "q" / "data").exists()


def test_vae_colour_sets_the_vae_stage_colour_loss(tmp_path):
    assert quickstart.vae_config(tmp_path, 5.0, 0).loss.colour == 0.0
    assert quickstart.vae_config(tmp_path, 5.0, 0, 0.5).loss.colour == 0.5
    result = CliRunner().invoke(
        app, ["quickstart", "--workdir", str(tmp_path / "q"), "--vae-colour", "-1"]
    )
    assert result.exit_code != 0 and "vae_colour" in result.output
    assert not (tmp_path / "q" / "data").exists()


def test_budget_scales_the_overheads_to_come_by_the_measured_slowdown(tmp_path):
    overhead = {"data": 10.0, "vae": 10.0, "cache": 30.0, "dit": 5.0, "eval": 25}
    budget = quickstart.Budget(tmp_path / "plan.json", 900.0, overhead, start=time.time() - 30)
    budget.observe("data", 30.0)  # three times the estimate: a slow or busy machine
    assert budget.slowdown() == 3.0
    vae = budget.minutes("vae", ["cache", "dit", "eval"])
    assert abs(vae - quickstart.SHARES["vae"] * (870 - 3 * 70) / 60) < 0.01
    budget.observe("vae", 2.0)  # (30 + 2) / (10 + 10)
    assert budget.slowdown() == 1.6
    budget.observe("cache", 200.0)
    assert budget.slowdown() == 4.0  # bounded


def test_scenes_quickstart_tiny_budget(tmp_path):
    report = quickstart.main(
        tmp_path, budget_minutes=0.2, num_clips=24, world="scenes", eval_per_group=1
    )
    assert report == tmp_path / "bench/report.json"
    summary = json.loads(report.read_text())["summary"]
    timings = json.loads((tmp_path / "timings.json").read_text())
    for category, score in timings["scores"].items():
        assert summary[category]["all"]["score"] == score
    assert set(timings["scores"]) == set(quickstart.CATEGORIES)
    assert abs(timings["mean_score"] - sum(timings["scores"].values()) / 8) < 1e-3
    assert (tmp_path / "bench/report.html").is_file()
    # The recipe's latents and DiT, trained from nothing: 4 x 17 x 16 x 16 latents per clip.
    pipe = Pipeline.load(tmp_path / "model")
    assert pipe.vae.cfg == quickstart.SCENES_VAE and pipe.dit.cfg == quickstart.SCENES_DIT
    assert pipe.cfg.cfg_scale == 3.0
    assert pipe.generate(["a red circle left of a blue square"], steps=2).shape == (
        1,
        17,
        64,
        64,
        3,
    )
    assert timings["skipped"] == [] and set(timings["minutes"]) == {"vae", "dit"}
    quickstart.main(tmp_path, budget_minutes=0.2, num_clips=24, world="scenes", eval_per_group=1)
    again = json.loads((tmp_path / "timings.json").read_text())
    assert again["skipped"] == ["data", "vae", "cache", "dit"]


def test_scenes_quickstart_trains_the_recipes_vae_and_dit():
    """The scenes quickstart's VAE, DiT and sampler are the recipe's (configs/), bounded by time."""
    root = Path(__file__).resolve().parents[1]
    vae = load_config(VAETrainConfig, root / "configs/scenes_vae_s4.yaml")
    dit = load_config(DiTTrainConfig, root / "configs/scenes_dit.yaml")
    assert quickstart.SCENES_VAE == vae.vae and quickstart.SCENES_DIT == dit.dit
    assert quickstart.SCENES_TEXT == dit.text
    qv = quickstart.scenes_vae_config(Path("w"), 5.0, 0)
    qd = quickstart.scenes_dit_config(Path("w"), 40.0, 0, 8000)
    assert (qv.loss.object_weight, qv.crop, qv.crop_content) == (
        vae.loss.object_weight,
        vae.crop,
        vae.crop_content,
    )
    assert (qd.flow.train_shift, qd.flow.sample_shift) == (
        dit.flow.train_shift,
        dit.flow.sample_shift,
    )
    assert (qd.optim.kind, qd.optim.lr, qd.flow.cfg_scale, qd.train.batch_size, qd.train.bf16) == (
        dit.optim.kind,
        dit.optim.lr,
        dit.flow.cfg_scale,
        dit.train.batch_size,
        dit.train.bf16,
    )
    assert qd.train.minutes == 40.0 and qv.train.minutes == 5.0
