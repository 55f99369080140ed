"""The whole path in one call, at a tiny budget: every stage runs and the report is complete."""

import json

from nanosora import quickstart
from nanosora.generate import Pipeline


def test_quickstart_tiny_budget(tmp_path):
    report = quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    assert report == tmp_path / "report.html"
    data = json.loads((tmp_path / "report.json").read_text())
    for key in ("adherence_in_distribution", "adherence_heldout"):
        assert data["metrics"][key]["n"] in (24, 8)
        assert 0.0 <= data["metrics"][key]["joint"] <= 1.0
    assert "vae_heldout_psnr" in data["metrics"]
    html = report.read_text()
    assert html.count("data:image/gif;base64") == 32  # one video per eval prompt
    assert "data:image/png;base64" in html  # loss curves
    pipe = Pipeline.load(tmp_path / "model")  # usable as --model DIR/model
    assert pipe.generate(["a red circle moving left"], steps=2).shape == (1, 17, 64, 64, 3)
    # A second call finds every stage complete and only re-evaluates.
    timings = json.loads((tmp_path / "timings.json").read_text())
    quickstart.main(tmp_path, budget_minutes=0.15, num_clips=16, eval_seeds=1)
    again = json.loads((tmp_path / "timings.json").read_text())
    assert again["vae"] < 1.0 and again["dit"] < 1.0 and timings["vae"] > again["vae"]
