"""The `nanosora ingest` and `nanosora clips` commands (thin wrappers: arguments reach main)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from nanosora.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
PANDA = FIXTURES / "panda70m_validation.csv"


def test_ingest_command(tmp_path: Path) -> None:
    out, urls = tmp_path / "m.jsonl", tmp_path / "urls.txt"
    args = ["ingest", "panda70m", "-a", str(PANDA), "-o", str(out), "--download-list", str(urls)]
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out)
    first = json.loads(out.read_text().splitlines()[0])
    assert (first["source_id"], first["start"], first["end"]) == ("-1hTK0wGrTg", 19.227, 28.278)
    assert len(urls.read_text().splitlines()) == 20


def test_ingest_command_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["ingest", "panda70m", "-a", str(tmp_path / "none.csv")])
    assert missing.exit_code == 2 and "annotation file not found" in missing.output
    unknown = runner.invoke(app, ["ingest", "kinetics", "-a", str(tmp_path / "x.csv")])
    assert unknown.exit_code == 2 and "unknown dataset" in unknown.output
    bad = runner.invoke(app, ["ingest", "generic", "-a", "x.csv", "--column", "path"])
    assert bad.exit_code == 2 and "MANIFEST_COLUMN=FILE_COLUMN" in bad.output


def test_clips_command(tmp_path: Path) -> None:
    import numpy as np

    from nanosora.data.manifest import write_manifest
    from nanosora.video.io import write_video

    write_video(tmp_path / "long.mp4", np.zeros((30, 16, 16, 3), np.uint8), fps=10)
    df = pd.DataFrame({"path": ["long.mp4"], "text": ["black"], "start": [0.5], "end": [1.5]})
    manifest = write_manifest(df, tmp_path / "long.parquet")
    result = CliRunner().invoke(app, ["clips", str(manifest), "-d", str(tmp_path / "c"), "--quiet"])
    assert result.exit_code == 0, result.output
    clips = pd.read_parquet(tmp_path / "c" / "manifest.parquet")
    assert clips["num_frames"].tolist() == [10] and clips["text"].tolist() == ["black"]
