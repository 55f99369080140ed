"""`nanosora eval`: VAE reconstruction report on a manifest; reports are self-contained HTML."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from nanosora.cli import app
from nanosora.config import VAEConfig, VAETrainConfig, apply_overrides
from nanosora.evaluate.report import write_report
from nanosora.pipeline import SHIPPED_MODEL
from nanosora.shapes.world import generate_dataset
from nanosora.train import vae as train_vae


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    generate_dataset(root / "data", 6, seed=2, progress=False)
    cfg = apply_overrides(
        VAETrainConfig(vae=VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4)),
        [
            f"data.manifest={root / 'data/manifest.parquet'}",
            f"train.out_dir={root / 'vae'}",
            "train.steps=2",
            "train.batch_size=2",
            "train.sample_every=0",
            "data.num_frames=9",
            "data.height=32",
            "data.width=32",
        ],
    )
    return train_vae.main(cfg), root / "data/manifest.parquet"


def test_eval_vae_cli(vae_run, tmp_path):
    run, manifest = vae_run
    r = CliRunner().invoke(
        app, ["eval", "--vae", str(run), "--manifest", str(manifest), "-o", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["metrics"]["clips"] == 6 and len(report["tables"]["per clip"]) == 6
    assert set(report["metrics"]["probe"]) == {"color", "shape", "direction", "all"}
    assert (tmp_path / "report.html").read_text().count("data:image/gif;base64") == 4  # worst clips


def test_eval_vae_needs_manifest(vae_run, tmp_path):
    r = CliRunner().invoke(app, ["eval", "--vae", str(vae_run[0]), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "--manifest" in r.output


def test_report_is_self_contained(tmp_path):
    video = np.zeros((3, 8, 8, 3), dtype=np.uint8)
    _, html = write_report(
        tmp_path, "t <x>", {"a": {"b": 1.5}}, {"rows": [{"k": "v"}]}, {"s": [("cap", video)]}, {}
    )
    text = html.read_text()
    assert "t &lt;x&gt;" in text and "a.b" in text and "data:image/gif;base64," in text
    assert 'src="http' not in text  # nothing to fetch


def test_eval_vae_skips_missing_files_and_needs_real_lpips_path(vae_run, tmp_path):
    import pandas as pd

    from nanosora.data.manifest import write_manifest

    run, manifest = vae_run
    df = pd.read_parquet(manifest)
    df.loc[1, "path"] = "clips/gone.mp4"
    partial = write_manifest(df, manifest.parent / "partial.parquet")
    r = CliRunner().invoke(
        app, ["eval", "--vae", str(run), "--manifest", str(partial), "-o", str(tmp_path)]
    )
    assert r.exit_code == 0, r.output
    assert "skipped row 1" in r.output and "gone.mp4: no such file" in r.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["metrics"]["clips"] == 5 and report["metrics"]["skipped"] == 1
    assert [row["index"] for row in report["tables"]["skipped files"]] == [1]
    assert 1 not in [row["index"] for row in report["tables"]["per clip"]]
    missing = tmp_path / "lpips_alex.pt"
    r = CliRunner().invoke(
        app,
        ["eval", "--vae", str(run), "--manifest", str(manifest), "--lpips", str(missing)],
    )
    assert r.exit_code == 2 and "lpips_alex.pt not found" in r.output


def test_eval_vae_with_perceptual_network(vae_run, tmp_path):
    import torch

    conv = torch.nn.Conv2d(3, 4, 3)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = conv

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return (self.conv(x) - self.conv(y)).pow(2).mean((1, 2, 3))

    torch.jit.script(Net()).save(str(tmp_path / "p.pt"))
    run, manifest = vae_run
    args = [
        "eval",
        "--vae",
        str(run),
        "--manifest",
        str(manifest),
        "--lpips",
        str(tmp_path / "p.pt"),
    ]
    r = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "out/report.json").read_text())
    per_clip = [row["perceptual"] for row in report["tables"]["per clip"]]
    assert len(per_clip) == 6 and min(per_clip) > 0  # a 2-step VAE reconstructs imperfectly
    assert report["metrics"]["perceptual"] == pytest.approx(np.mean(per_clip))


def test_eval_cli_train_encoder_videos_and_compare(vae_run, tmp_path):
    manifest = vae_run[1]
    runner = CliRunner()
    r = runner.invoke(
        app, ["eval", "--train-encoder", "--encoder-steps", "2", "-o", str(tmp_path / "enc")]
    )
    assert r.exit_code == 0, r.output
    assert "shapes encoder accuracy" in r.output and (tmp_path / "enc/model.safetensors").is_file()
    for name, n in (("a", 3), ("b", 6)):
        args = ["eval", "--videos", str(manifest), "--encoder", str(tmp_path / "enc")]
        r = runner.invoke(app, [*args, "--max-clips", str(n), "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        assert json.loads((tmp_path / name / "report.json").read_text())["metrics"]["clips"] == n
    reports = [str(tmp_path / name / "report.json") for name in ("a", "b")]
    r = runner.invoke(app, ["eval", "--compare", *reports, "-o", str(tmp_path / "cmp")])
    assert r.exit_code == 0, r.output
    assert "<th>a</th><th>b</th>" in (tmp_path / "cmp/compare.html").read_text()
    r = runner.invoke(app, ["eval", *reports])
    assert r.exit_code == 2 and "--compare" in r.output
    r = runner.invoke(app, ["eval", "--videos", str(manifest), "--encoder", str(tmp_path)])
    assert r.exit_code == 2 and "--train-encoder" in r.output


def test_eval_model_adds_temporal_and_fsd(tmp_path):
    from nanosora.evaluate.features import EncoderConfig, train_encoder
    from nanosora.evaluate.run import eval_model

    enc = train_encoder(tmp_path / "enc", EncoderConfig(width=4, feature_dim=8, steps=2))
    # The shipped model with 2 sampling steps in its pipeline.yaml: eval samples with them.
    model = Path(shutil.copytree(SHIPPED_MODEL, tmp_path / "model"))
    cfg = yaml.safe_load((model / "pipeline.yaml").read_text())
    (model / "pipeline.yaml").write_text(yaml.safe_dump({**cfg, "steps": 2}))
    eval_model(model, tmp_path / "out", seeds=1, encoder=enc)
    report = json.loads((tmp_path / "out/report.json").read_text())
    m = report["metrics"]
    assert m["steps"] == 2
    assert set(m["temporal"]) == {"flicker", "motion_smoothness", "object_persistence"}
    # 2 steps are the shipped pipeline's few-step transformer's, with its noise share.
    assert m["transformer"] == "few-step" and m["eta"] == 1.0 and m["cfg_scale"] is None
    assert np.isfinite(m["fsd"]) and m["fsd"] > 0 and np.isfinite(m["fsd_floor"])
    samples = report["tables"]["samples"]
    assert len(samples) == 32 and all(0 <= s["object_persistence"] <= 1 for s in samples)
    # The shipped model draws every object: each sample has a fill, the metric their medians.
    assert all(0 < s["fill"] <= 1 for s in samples)
    squares = [s["fill"] for s in samples if " square " in s["prompt"]]
    assert m["shape_fill"]["square"] == pytest.approx(np.median(squares), abs=1e-4)
    assert set(m["shape_fill"]) == {"circle", "square", "triangle"}


def test_shape_fill_medians_per_prompted_shape():
    from nanosora.evaluate.adherence import shape_fill

    samples = [
        {"prompt": "a red square moving left", "fill": 0.95},
        {"prompt": "a blue square moving up", "fill": 0.85},
        {"prompt": "a blue square moving up", "fill": None},  # nothing found: left out
        {"prompt": "a green circle moving down", "fill": 0.78},
    ]
    assert shape_fill(samples) == {"circle": 0.78, "square": 0.9}
    assert shape_fill([]) == {}


def test_eval_conditioning_and_concept_cli(tmp_path):
    """Image-to-video/extension on real clips and a new-concept check, on the shipped model
    with 2 Euler steps (the numbers are not the point here, their presence and ranges are)."""
    data = generate_dataset(tmp_path / "clips", 2, seed=4, split="heldout", progress=False)
    r = CliRunner().invoke(
        app,
        ["eval", "--conditioning", str(data / "manifest.parquet"), "--concept", "diamond",
         "--max-clips", "2", "--seeds", "1", "--steps", "2", "-o", str(tmp_path / "out")],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    m = json.loads((tmp_path / "out/report.json").read_text())["metrics"]
    assert m["image_to_video"]["adherence"]["n"] == 2 and m["extension"]["adherence"]["n"] == 2
    assert 20 < m["image_to_video"]["first_frame_psnr"] < 100
    assert m["concept"]["n"] == 32 and m["base_prompts"]["n"] == 32
    bad = CliRunner().invoke(app, ["eval", "--concept", "hexagon", "-o", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--concept must be one of" in bad.output
