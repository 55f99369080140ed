"""End to end: outputs, rejects for bad input, and kill-then-rerun == an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nanosora.curate.rejects import read_rejects
from nanosora.curate.runner import CurateConfig, main

from .conftest import write_recipe

BAD = {"empty", "garbage", "notes", "truncated", "missing"}


def run(tmp: Path, videos: Path, name: str, np: int = 1, **kw: object) -> pd.DataFrame:
    recipe = write_recipe(tmp / f"{name}.yaml", videos, tmp / name / "out.parquet", np=np)
    main(CurateConfig(recipe=recipe, progress=False, **kw))  # type: ignore[arg-type]
    return pd.read_parquet(tmp / name / "out.parquet")


def test_curate_end_to_end(videos: Path, tmp_path: Path) -> None:
    out = run(tmp_path, videos, "a")
    rejects = read_rejects(tmp_path / "a" / "out.rejects.jsonl")
    by_file = {Path(r["path"]).stem.split("_")[-1]: r for r in rejects}
    # Every bad input is reported by the probe with the decoder's reason; the run went on.
    assert BAD <= set(by_file)
    assert all(by_file[k]["op"] == "probe" for k in BAD)
    assert "no such file" in by_file["missing"]["reason"]
    assert "zero-length" in by_file["empty"]["reason"]
    assert by_file["short"]["op"] == "video_duration_filter"
    assert by_file["wide"]["op"] == "video_aspect_ratio_filter"
    assert by_file["black"]["op"] == "video_motion_score_filter"
    # 5 multi-scene videos, 3 scenes each, one row per scene with its range.
    assert len(out) == 15 and set(out["kind"]) == {"multi"}
    assert (out["scene_count"] == 3).all() and (out["end"] > out["start"]).all()
    assert out["motion_score"].min() > 0.25
    # Paths are relative to the output folder and point at the videos.
    assert all((tmp_path / "a" / p).is_file() for p in out["path"])
    summary = json.loads((tmp_path / "a" / "out.summary.json").read_text())
    assert summary["input_rows"] == 13 and summary["output_rows"] == 15


def test_local_pool_equals_in_process(videos: Path, tmp_path: Path) -> None:
    pd.testing.assert_frame_equal(
        run(tmp_path, videos, "p1", np=1), run(tmp_path, videos, "p2", np=2)
    )


def test_kill_halfway_and_rerun_equals_uninterrupted(videos: Path, tmp_path: Path) -> None:
    reference = run(tmp_path, videos, "ref")
    recipe = write_recipe(tmp_path / "k.yaml", videos, tmp_path / "k" / "out.parquet", np=1)
    cmd = [sys.executable, "-m", "nanosora.cli", "curate", "--recipe", str(recipe), "--quiet"]
    journal = tmp_path / "k" / ".out.parquet.curate" / "pass0.jsonl"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = journal.read_text().count("\n")
    assert 4 <= done < 13
    with journal.open("a") as f:  # what a kill in the middle of a write leaves behind
        f.write('{"id": "12", "rows": [{"pa')
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = pd.read_parquet(tmp_path / "k" / "out.parquet")
    pd.testing.assert_frame_equal(resumed, reference)
    summary = json.loads((tmp_path / "k" / "out.summary.json").read_text())
    assert summary["rows_reused_from_journal"] == done
    ids = [json.loads(line)["id"] for line in journal.read_text().splitlines()]
    assert sorted(ids, key=int) == [str(i) for i in range(13)], "each row processed exactly once"


def test_stats_only_run_keeps_every_row(videos: Path, tmp_path: Path) -> None:
    out = run(tmp_path, videos, "s", keep_all=True)
    assert {"short", "wide", "black"} <= set(out["kind"])
    assert out["motion_score"].notna().all()


@pytest.mark.parametrize("fmt", [".jsonl", ".csv"])
def test_datajuicer_jsonl_in_and_out(videos: Path, tmp_path: Path, fmt: str) -> None:
    dj = tmp_path / "dj.jsonl"
    rows = [json.loads(line) for line in videos.read_text().splitlines()][:3]
    with dj.open("w") as f:
        for r in rows:
            path = str(videos.parent / r["path"])
            f.write(json.dumps({"videos": [path], "text": f"<__dj__video> {r['text']}"}) + "\n")
    export = tmp_path / "o" / f"out{fmt}"
    recipe = write_recipe(tmp_path / "r.yaml", dj, export)
    main(CurateConfig(recipe=recipe, progress=False))
    if fmt == ".jsonl":  # Data-Juicer in, Data-Juicer out: one sample per scene clip
        samples = [json.loads(line) for line in export.read_text().splitlines()]
        assert len(samples) == 6 and all(s["text"].startswith("<__dj__video>") for s in samples)
        assert all((export.parent / s["videos"][0]).is_file() for s in samples)
    else:
        assert len(pd.read_csv(export)) == 6
