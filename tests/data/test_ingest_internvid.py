"""InternVid ingest: JSONL clips with H:MM:SS.mmm timestamps and two scores."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nanosora.data.ingest import IngestConfig, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
QUERIES = FIXTURES / "internvid_queries.first20.jsonl"

# The row quoted in internvid_row_excerpt_from_data-juicer_internvid_to_dj.py.txt. There the
# YoutubeID was already replaced by a local path (what Data-Juicer's converter expects); the
# published files hold the bare id, so both forms are tested.
REAL = {
    "YoutubeID": "videos/qJrOyggIB-w.mp4",
    "Start_timestamp": "00:07:33.689",
    "End_timestamp": "00:07:51.085",
    "Caption": "a screen shot of heroes of the storm with people in action",
    "Aesthetic_Score": 4.29296875,
    "UMT_Score": 0.4501953125,
}


def ingest(tmp_path: Path, *files: Path) -> tuple[pd.DataFrame, list[dict]]:
    out = tmp_path / "m.parquet"
    main(IngestConfig(dataset="internvid", annotations=files, output=out, progress=False))
    rejects = tmp_path / "m.rejects.jsonl"
    lines = rejects.read_text().splitlines() if rejects.exists() else []
    return pd.read_parquet(out), [json.loads(x) for x in lines]


def test_real_row_in_both_id_forms(tmp_path: Path) -> None:
    path = tmp_path / "InternVid-10M-FLT.jsonl"
    raw = {**REAL, "YoutubeID": "qJrOyggIB-w", "CLIP_Score": 0.31}
    path.write_text(json.dumps(REAL) + "\n" + json.dumps(raw) + "\n")
    df, rejects = ingest(tmp_path, path)
    assert rejects == [{**rejects[0]}] and rejects[0]["kind"] == "duplicate_id"  # same clip twice
    (row,) = df.itertuples()
    assert (row.path, row.source_id, row.youtube_id) == (
        "videos/qJrOyggIB-w.mp4", "qJrOyggIB-w", "qJrOyggIB-w",
    )  # fmt: skip
    assert (row.start, row.end) == (453.689, 471.085)
    assert row.text == "a screen shot of heroes of the storm with people in action"
    assert (row.aesthetic_score, row.umt_score) == (4.29296875, 0.4501953125)
    assert row.url == "https://www.youtube.com/watch?v=qJrOyggIB-w"
    path.write_text(json.dumps(raw) + "\n")
    df, _ = ingest(tmp_path, path)
    assert df.iloc[0]["path"] == "qJrOyggIB-w.mp4"
    assert json.loads(df.iloc[0]["extra"]) == {"CLIP_Score": 0.31}


def test_malformed_lines(tmp_path: Path) -> None:
    bad = [
        {**REAL, "YoutubeID": "a1", "End_timestamp": "00:07:30.000"},  # end before start
        {**REAL, "YoutubeID": "a2", "Start_timestamp": "00:07:61.000"},  # seconds >= 60
        {k: v for k, v in REAL.items() if k != "Caption"},  # missing caption
        {**REAL, "YoutubeID": "a4", "UMT_Score": "high"},  # not a number
    ]
    path = tmp_path / "bad.jsonl"
    text = "\n".join(json.dumps(b) for b in bad) + '\n{"YoutubeID": \n' + json.dumps(REAL) + "\n"
    path.write_text(text)
    df, rejects = ingest(tmp_path, path)
    assert len(df) == 1 and df.iloc[0]["start"] == 453.689
    assert [(r["line"], r["field"], r["kind"]) for r in rejects] == [
        (1, "End_timestamp", "end_before_start"),
        (2, "Start_timestamp", "bad_timestamp"),
        (3, "Caption", "missing_field"),
        (4, "UMT_Score", "bad_value"),
        (5, "(line)", "bad_json"),
    ]


def test_queries_file_is_not_annotation_rows(tmp_path: Path) -> None:
    # internvid_queries.first20.jsonl holds search queries, not clips: every line is rejected.
    df, rejects = ingest(tmp_path, QUERIES)
    assert len(df) == 0 and len(rejects) == 20
    assert {r["field"] for r in rejects} == {"YoutubeID"}
