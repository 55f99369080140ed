"""The whole path in one call, at a tiny budget: every stage runs and the report is complete."""

import dataclasses
import json

import pytest
import torch

from nanosora import quickstart
from nanosora.config import DataConfig
from nanosora.generate import Pipeline
from nanosora.train.vae import load_vae


def test_quickstart_tiny_budget(tmp_path):
    report = quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    assert report == tmp_path / "report.html"
    data = json.loads((tmp_path / "report.json").read_text())
    for key in ("adherence_in_distribution", "adherence_heldout"):
        assert data["metrics"][key]["n"] in (24, 8)
        assert 0.0 <= data["metrics"][key]["joint"] <= 1.0
    assert "vae_heldout_psnr" in data["metrics"]
    assert "vae_heldout_psnr_before_decoder_tuning" in data["metrics"]
    html = report.read_text()
    assert html.count("data:image/gif;base64") == 32  # one video per eval prompt
    assert "data:image/png;base64" in html  # loss curves
    pipe = Pipeline.load(tmp_path / "model")  # usable as --model DIR/model
    assert pipe.generate(["a red circle moving left"], steps=2).shape == (1, 17, 64, 64, 3)
    # The model's VAE: the first stage's encoder (what the cache and the DiT saw) and the
    # fine-tuned decoder (stored in float16).
    first, tuned = load_vae(tmp_path / "runs/vae"), load_vae(tmp_path / "runs/vae_decoder")
    shipped = pipe.vae.state_dict()
    for k, v in first.encoder.state_dict().items():
        assert torch.allclose(shipped[f"encoder.{k}"], v, atol=1e-2), k
    changed = [
        k
        for k, v in tuned.decoder.state_dict().items()
        if not torch.equal(v, first.decoder.state_dict()[k])
    ]
    assert changed, "the decoder fine-tuning changed nothing"
    for k in changed:
        assert torch.allclose(shipped[f"decoder.{k}"], tuned.decoder.state_dict()[k], atol=1e-2)
    # A second call finds every stage complete and only re-evaluates.
    timings = json.loads((tmp_path / "timings.json").read_text())
    quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    again = json.loads((tmp_path / "timings.json").read_text())
    assert again["vae"] < 1.0 and again["dit"] < 1.0 and timings["vae"] > again["vae"]

    # A failing decoder process is reported with its log; the finished DiT is kept.
    decoder = quickstart.decoder_config(tmp_path, 0.01, 0)
    bad = dataclasses.replace(
        decoder,
        data=DataConfig(manifest=str(tmp_path / "missing.parquet")),
        train=dataclasses.replace(decoder.train, out_dir=str(tmp_path / "runs/bad_decoder")),
    )
    with pytest.raises(RuntimeError, match="bad_decoder.log"):
        quickstart.train_side_by_side(quickstart.dit_config(tmp_path, 0.01, 0, 16), bad)
    assert "missing.parquet" in (tmp_path / "runs/bad_decoder.log").read_text()
    assert (tmp_path / "runs/dit/pipeline/pipeline.yaml").is_file()
