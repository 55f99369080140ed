"""The whole path in one call, at a tiny budget: every stage runs and the report is complete."""

import json

import torch
import yaml

from nanosora import quickstart
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
    # The model samples with the quickstart's steps and the report was made with them.
    assert pipe.cfg.steps == data["metrics"]["steps"] == quickstart.QUICK_STEPS
    assert pipe.generate(["a red circle moving left"], steps=2).shape == (1, 17, 64, 64, 3)
    # The decoder stage changed the decoder only: the encoder and the latent statistics the
    # cache was made with are the first stage's, and the model (float16) has the tuned decoder.
    first = load_vae(tmp_path / "runs/vae").state_dict()
    tuned = load_vae(tmp_path / "runs/vae_decoder").state_dict()
    for k, v in first.items():
        if not k.startswith("decoder."):  # encoder weights, latent_mean, latent_std
            assert torch.equal(tuned[k], v), k
    decoder = [k for k in tuned if k.startswith("decoder.")]
    changed = [
        k for k in decoder if tuned[k].is_floating_point() and not torch.equal(tuned[k], first[k])
    ]
    assert changed, "the decoder stage changed nothing"
    # ... on whole 17-frame clips (the first stage trains on 9-frame windows).
    decoder_cfg = yaml.safe_load((tmp_path / "runs/vae_decoder/config.yaml").read_text())
    assert decoder_cfg["data"]["num_frames"] == 17 and decoder_cfg["init_from"].endswith("vae")
    shipped = pipe.vae.state_dict()
    for k in decoder:
        assert torch.allclose(shipped[k].float(), tuned[k].float(), atol=1e-2), k
    # A second call finds every stage complete and only re-evaluates.
    timings = json.loads((tmp_path / "timings.json").read_text())
    quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    again = json.loads((tmp_path / "timings.json").read_text())
    assert again["vae"] < 1.0 and again["decoder"] < 1.0 and again["dit"] < 1.0
    assert timings["vae"] > again["vae"] and timings["decoder"] > again["decoder"]
