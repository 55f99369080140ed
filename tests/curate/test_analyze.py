"""`nanosora analyze`: statistics, histograms, HTML and 3-sigma thresholds."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from nanosora.cli import app

from .conftest import write_recipe


def test_analyze_recipe_statistics(videos: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path / "r.yaml", videos, tmp_path / "unused.parquet")
    out = tmp_path / "an"
    result = CliRunner().invoke(
        app, ["analyze", "--recipe", str(recipe), "-o", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert {"motion_score", "duration", "video_aspect_ratio", "num_words"} <= set(stats)
    for s in stats.values():
        assert s["min"] <= s["suggested_min"] <= s["p50"] <= s["suggested_max"] <= s["max"]
    assert (out / "hist_motion_score.png").stat().st_size > 1000
    assert "motion_score" in (out / "index.html").read_text()


def test_curate_cli_reports_bad_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "dataset_path: x.jsonl\nexport_path: y.jsonl\nprocess:\n  - nope_filter: {}\n"
    )
    result = CliRunner().invoke(app, ["curate", "--recipe", str(recipe)])
    assert result.exit_code == 2 and "nope_filter" in result.output
