"""Panda-70M ingest on the real fixture rows, the 7-column layout, and malformed input."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from nanosora.data.adapters import formats
from nanosora.data.adapters.formats import parse_float_list, parse_span_list, parse_str_list
from nanosora.data.ingest import IngestConfig, IngestError, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
PANDA = FIXTURES / "panda70m_validation.csv"


def ingest(tmp_path: Path, *files: Path, **kw: object) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "out" / "manifest.parquet"
    cfg = IngestConfig(
        dataset="panda70m", annotations=tuple(files), output=out, progress=False, **kw
    )
    main(cfg)
    summary = json.loads((out.parent / "manifest.summary.json").read_text())
    return pd.read_parquet(out), summary


def rejects(tmp_path: Path) -> list[dict]:
    path = tmp_path / "out" / "manifest.rejects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_validation_fixture_rows(tmp_path: Path) -> None:
    df, summary = ingest(tmp_path, PANDA)
    assert len(df) == 60 and summary["records"] == 20 and summary["rejected"] == {}
    first = df.iloc[0]
    assert first["path"] == "-1hTK0wGrTg.mp4" and first["source_id"] == "-1hTK0wGrTg"
    assert first["url"] == "https://www.youtube.com/watch?v=-1hTK0wGrTg"
    assert (first["start"], first["end"]) == (19.227, 28.278)
    assert first["text"] == (
        "The speaker is standing in front of a purple background, wearing a blue shirt and glasses."
    )
    assert first["matching_score"] == 0.50927734375
    assert (first["clip_id"], first["clip_index"], first["source"]) == (
        "-1hTK0wGrTg.0",
        0,
        "panda70m",
    )
    # A caption CSV-quoted with "" because it holds an apostrophe (Python repr used "...").
    chef = df[(df.source_id == "-AM0oWK3RBA") & (df.clip_index == 1)].iloc[0]
    assert chef["text"].startswith("A man is cooking in a blue kitchen. he is wearing a chef's hat")
    assert (chef["start"], chef["end"], chef["matching_score"]) == (
        150.683,
        154.654,
        0.468505859375,
    )
    # Double quotes inside a caption, and times past ten minutes.
    words = df[(df.source_id == "-DEqU1kASSg") & (df.clip_index == 2)].iloc[0]
    assert words["text"] == (
        'A picture of an orange background with the words "watch this video" written on it.'
    )
    assert (words["start"], words["end"]) == (1033.499, 1051.116)
    last = df.iloc[-1]
    assert (last["source_id"], last["start"], last["end"]) == ("-b8UbYBChhk", 187.987, 236.035)
    assert last["matching_score"] == 0.46923828125


def test_fast_cell_parsers_equal_literal_eval() -> None:
    """The regex fast path returns exactly what ast.literal_eval returns (fixture + odd cells)."""
    cells = pd.read_csv(PANDA, dtype=str)
    odd = ["['it\\'s', \"x\"]", "['tab\\there']", "['中文 caption', '']", "[]", "['a,b', \"c'd\"]"]
    for cell in [*cells["caption"], *odd]:
        assert parse_str_list(cell, "caption") == ast.literal_eval(cell)
    for cell in [*cells["matching_score"], "[1, 2.5, -3e-2]", "[]"]:
        assert parse_float_list(cell, "s") == [float(v) for v in ast.literal_eval(cell)]
    for cell in cells["timestamp"]:
        pairs = ast.literal_eval(cell)
        fast = parse_span_list(cell, "timestamp")
        formats.LITERAL_FAST_PATH = False
        try:
            assert parse_span_list(cell, "timestamp") == fast
        finally:
            formats.LITERAL_FAST_PATH = True
        assert len(fast) == len(pairs) == 3


def seven_column_row() -> list[str]:
    """The one real 7-column row, read from its transposed docstring excerpt."""
    lines = (FIXTURES / "panda70m_7col_row_transposed_excerpt.txt").read_text().splitlines()
    values = [lines[i + 1] for i, line in enumerate(lines) if line.rstrip().endswith(",")]
    values.append(lines[lines.index("shot_boundary_detection") + 1])
    return [ast.literal_eval(v) if v.startswith('"') else v for v in values]


def test_seven_column_layout(tmp_path: Path) -> None:
    header = (
        "videoID,url,timestamp,caption,matching_score,desirable_filtering,shot_boundary_detection"
    )
    row = seven_column_row()
    csv_path = tmp_path / "panda70m_training.csv"
    pd.DataFrame([row], columns=header.split(",")).to_csv(csv_path, index=False)
    df, _ = ingest(tmp_path, csv_path)
    assert list(df["source_id"]) == ["-2yHu5qgTzM"] * 3
    assert list(df["desirable_filtering"]) == ["1_still_foreground_image", "desirable", "desirable"]
    assert (df.iloc[0]["start"], df.iloc[0]["end"]) == (80.88, 83.983)
    assert (
        df.iloc[1]["text"] == "A woman is standing on a black background and talking to the camera."
    )
    assert df.iloc[2]["matching_score"] == 0.434814453125
    assert [list(s) for s in df.iloc[0]["shot_boundaries"]] == [[0.0, 3.069]]
    assert [list(s) for s in df.iloc[2]["shot_boundaries"]] == [[0.0, 2.702], [2.736, 4.838]]


def malformed_csv(tmp_path: Path) -> Path:
    """Fixture rows 1-4 intact, then one row per kind of damage, then a duplicate of row 1."""
    good = PANDA.read_bytes().splitlines(keepends=True)
    header, rows = good[0], good[1:5]
    bad = [
        b'broken1,u,"[[\'0:00:01.000\', \'0:00:02.000\']]","[\'unterminated]","[0.5]"\r\n',
        b"missing2,u,\"[['0:00:01.000', '0:00:02.000']]\",\"['a']\"\r\n",
        b"badtime3,u,\"[['0:00:01.000', '0:99:02.000']]\",\"['a']\",\"[0.5]\"\r\n",
        b"order4,u,\"[['0:00:05.000', '0:00:02.000'], ['0:00:06.000', '0:00:07.500']]\","
        b"\"['backwards', 'fine']\",\"[0.5, 0.25]\"\r\n",
        b"bytes5,u,\"[['0:00:01.000', '0:00:02.000']]\",\"['caf\xe9']\",\"[0.5]\"\r\n",
        b"count6,u,\"[['0:00:01.000', '0:00:02.000']]\",\"['a', 'b']\",\"[0.5]\"\r\n",
    ]
    path = tmp_path / "damaged.csv"
    path.write_bytes(header + b"".join(rows) + b"".join(bad) + rows[0])
    return path


def test_malformed_rows_are_rejected_with_file_line_field(tmp_path: Path) -> None:
    path = malformed_csv(tmp_path)
    df, summary = ingest(tmp_path, path)
    # 4 good records x 3 clips + the valid second clip of order4; nothing valid is lost.
    assert len(df) == 13
    assert df[df.source_id == "order4"]["text"].tolist() == ["fine"]
    assert (
        df[df.source_id == "order4"]["start"].item(),
        df[df.source_id == "order4"]["end"].item(),
    ) == (6.0, 7.5)
    got = {(r["line"], r["field"], r["kind"]) for r in rejects(tmp_path)}
    assert got == {
        (6, "caption", "bad_literal"),
        (7, "(row)", "missing_column"),
        (8, "timestamp[0]", "bad_timestamp"),
        (9, "timestamp[0]", "end_before_start"),
        (10, "caption", "non_utf8"),
        (11, "caption", "length_mismatch"),
        (12, "(id)", "duplicate_id"),
    }
    assert all(r["file"] == str(path) for r in rejects(tmp_path))
    assert summary["rejected"]["duplicate_id"] == 1 and summary["duplicate_rows"] == 3
    with pytest.raises(IngestError, match=r"damaged.csv:6: caption"):
        ingest(tmp_path, path, strict=True)


def test_wrong_format_file_is_rejected_and_others_still_ingest(tmp_path: Path) -> None:
    msrvtt = FIXTURES / "msrvtt_caption_test.first20.json"
    df, summary = ingest(tmp_path, msrvtt, PANDA)
    assert len(df) == 60
    (reject,) = rejects(tmp_path)
    assert reject["kind"] == "wrong_format" and reject["file"] == str(msrvtt)


def test_download_list_and_batches_across_records(tmp_path: Path) -> None:
    # batch_rows=2 splits records of 3 clips across batches: dedup must still see records.
    dup = tmp_path / "dup.csv"
    lines = PANDA.read_text().splitlines(keepends=True)
    dup.write_text("".join(lines[:4] + lines[1:2]))
    txt = tmp_path / "urls.txt"
    df, summary = ingest(tmp_path, dup, batch_rows=2, download_list=txt)
    assert len(df) == 9 and summary["rejected"] == {"duplicate_id": 1}
    assert txt.read_text().splitlines() == [
        "https://www.youtube.com/watch?v=-1hTK0wGrTg",
        "https://www.youtube.com/watch?v=-1urvnqfnfk",
        "https://www.youtube.com/watch?v=-AM0oWK3RBA",
    ]
