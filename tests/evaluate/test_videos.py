"""Evaluating clips on disk: bad files are reported and skipped, ground truth scores perfectly,
and the comparison page puts runs side by side."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from nanosora.data.manifest import write_manifest
from nanosora.evaluate.compare import compare_reports
from nanosora.evaluate.features import EncoderConfig, train_encoder
from nanosora.evaluate.report import write_report
from nanosora.evaluate.run import eval_videos
from nanosora.evaluate.videos import render_reference
from nanosora.shapes.probe import probe_frames
from nanosora.shapes.world import generate_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    generate_dataset(root / "data", 6, seed=4, progress=False)
    enc = train_encoder(root / "enc", EncoderConfig(width=4, feature_dim=8, steps=3, batch_size=4))
    df = pd.read_parquet(root / "data/manifest.parquet")[["path", "text"]]
    (root / "data/clips/corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    (root / "data/clips/empty.mp4").write_bytes(b"")
    bad = pd.DataFrame(
        {
            "path": ["clips/missing.mp4", "clips/corrupt.mp4", "clips/empty.mp4"],
            "text": ["a red circle moving left"] * 3,
        }
    )
    # Bad rows first: the clip shape must come from the first *readable* clip.
    manifest = write_manifest(pd.concat([bad, df], ignore_index=True), root / "data/gen.csv")
    return manifest, enc


def test_eval_videos_skips_bad_files_and_grades_ground_truth(data, tmp_path):
    manifest, enc = data
    html = eval_videos(manifest, tmp_path, encoder=enc)
    report = json.loads((tmp_path / "report.json").read_text())
    m = report["metrics"]
    assert m["clips"] == 6 and m["skipped"] == 3 and m["frames_height_width"] == [17, 64, 64]
    skipped = report["tables"]["skipped files"]
    assert [s["index"] for s in skipped] == [0, 1, 2]
    assert "no such file" in skipped[0]["reason"] and "zero-length" in skipped[2]["reason"]
    assert skipped[1]["path"].endswith("corrupt.mp4")
    assert [r["index"] for r in report["tables"]["per clip"]] == [3, 4, 5, 6, 7, 8]
    # Ground-truth clips: the probe reads every prompt, the objects persist, nothing flickers.
    assert m["adherence"]["joint"] == 1.0 and m["adherence"]["n"] == 6
    assert m["temporal"]["object_persistence"] == 1.0 and m["temporal"]["flicker"] < 2e-3
    assert np.isfinite(m["fsd"]) and np.isfinite(m["fsd_floor"]) and "fvd" not in m
    text = html.read_text()
    assert text.count("data:image/gif;base64") == 6 and "data:image/png;base64" in text


def test_eval_videos_without_encoder_says_how(data, tmp_path):
    eval_videos(data[0], tmp_path, max_clips=4)
    m = json.loads((tmp_path / "report.json").read_text())["metrics"]
    assert m["clips"] == 1 and m["skipped"] == 3
    assert "--train-encoder" in m["distribution_distance"] and "fsd" not in m
    eval_videos(data[0], tmp_path, encoder=data[1], max_clips=4)  # one readable clip
    m = json.loads((tmp_path / "report.json").read_text())["metrics"]
    assert ">= 2 clips" in m["distribution_distance"] and m["clips"] == 1


def test_reference_follows_the_prompts():
    prompts = ["a green square moving up", "A yellow ball slides to the left."]
    ref = render_reference(prompts, (9, 32, 32), seed=0)
    assert [v.shape for v in ref] == [(9, 32, 32, 3)] * 2
    read = [probe_frames(v) for v in ref]
    assert [(r.color, r.shape, r.direction) for r in read][0] == ("green", "square", "up")
    assert (read[1].color, read[1].direction) == ("yellow", "left")


def test_compare_reports_side_by_side(tmp_path):
    for name, psnr, fsd in (("runA", 30.0, 2.0), ("runB", 32.5, 1.0)):
        metrics = {"psnr": psnr, "temporal": {"flicker": 0.01}, "fsd": fsd, "note": "x"}
        write_report(tmp_path / name, name, metrics, {}, {}, {})
    write_report(tmp_path / "runC", "c", {"psnr": 20.0, "only_c": 1.0}, {}, {}, {})
    paths = [tmp_path / r / "report.json" for r in ("runA", "runB", "runC")]
    json_path, html_path = compare_reports(paths, tmp_path / "cmp")
    runs = json.loads(json_path.read_text())["runs"]
    assert list(runs) == ["runA", "runB", "runC"] and runs["runB"]["temporal.flicker"] == 0.01
    text = html_path.read_text()
    assert "<th>runA</th><th>runB</th><th>runC</th>" in text and "32.5" in text
    # psnr, temporal.flicker and fsd are numeric in >= 2 runs; "note" and "only_c" are not.
    assert text.count("data:image/png;base64") == 3
    assert not list((tmp_path / "cmp").glob("*.png"))  # charts are inlined
    with pytest.raises(ValueError, match="at least two"):
        compare_reports(paths[:1], tmp_path / "cmp")
    with pytest.raises(FileNotFoundError, match="not found"):
        compare_reports([paths[0], tmp_path / "nope/report.json"], tmp_path / "cmp")


def test_eval_videos_against_a_reference_manifest(data, tmp_path):
    manifest, enc = data
    reference = manifest.parent / "manifest.parquet"  # the same 6 clips: a distance near 0
    eval_videos(manifest, tmp_path / "same", encoder=enc, reference=reference)
    same = json.loads((tmp_path / "same/report.json").read_text())["metrics"]
    assert "fsd_floor" not in same  # 6 reference clips: not enough for a second set of 6
    assert abs(same["fsd"]) < 1e-9
    eval_videos(manifest, tmp_path / "shapes", encoder=enc)
    shapes = json.loads((tmp_path / "shapes/report.json").read_text())["metrics"]
    assert shapes["fsd"] > 1e-6  # freshly rendered ground truth is a different sample
