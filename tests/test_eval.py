"""`nanosora eval`: VAE reconstruction report on a manifest; reports are self-contained HTML."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from nanosora.cli import app
from nanosora.config import VAEConfig, VAETrainConfig, apply_overrides
from nanosora.evaluate.report import write_report
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
