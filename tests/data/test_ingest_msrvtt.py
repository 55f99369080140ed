"""MSR-VTT ingest: LAVIS caption list, CLIP4Clip CSVs, official videodatainfo JSON, HF rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from nanosora.data.adapters.msrvtt import JSFUSION_1K_A, standard_split
from nanosora.data.ingest import IngestConfig, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
LAVIS = FIXTURES / "msrvtt_caption_test.first20.json"
JSFUSION = FIXTURES / "msrvtt_JSFUSION_test.first20.semicolon.csv"

# The one HF `AlexZigma/msr-vtt` row quoted in msrvtt_hf_row_excerpt_from_data-juicer_msrvtt_to_dj
# .py.txt, as JSON. The source has a typo (`'category': 14',`); the value is the int 14.
HF_ROW = {
    "video_id": "video6513",
    "caption": "a family is having conversation",
    "category": 14,
    "url": "https://www.youtube.com/watch?v=A9pM9iOuAzM",
    "start time": 116.03,
    "end time": 126.21,
    "split": "validate",
    "id": 6513,
    "__index_level_0__": 6128,
}


def ingest(tmp_path: Path, *files: Path, rows: str = "clip") -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "m.parquet"
    main(IngestConfig(dataset="msrvtt", annotations=files, output=out, rows=rows, progress=False))
    return pd.read_parquet(out), json.loads((tmp_path / "m.summary.json").read_text())


def test_standard_and_1k_a_splits() -> None:
    assert [standard_split(n) for n in (0, 6512, 6513, 7009, 7010, 9999, 10000)] == [
        "train", "train", "validate", "validate", "test", "test", None,
    ]  # fmt: skip
    counts = pd.Series([standard_split(n) for n in range(10000)]).value_counts()
    assert counts.to_dict() == {"train": 6513, "test": 2990, "validate": 497}
    assert len(JSFUSION_1K_A) == 1000 and min(JSFUSION_1K_A) >= 7010
    with JSFUSION.open(newline="") as f:
        fixture_ids = {int(r["video_id"][5:]) for r in csv.DictReader(f, delimiter=";")}
    assert fixture_ids <= JSFUSION_1K_A


def test_lavis_list_one_row_per_clip(tmp_path: Path) -> None:
    df, summary = ingest(tmp_path, LAVIS)
    assert len(df) == 20 and summary["rejected"] == {}
    v = df.set_index("source_id")
    assert v.loc["video7010", "path"] == "video7010.mp4"
    assert (
        v.loc["video7010", "text"] == "a clip showing a computer screen which contains instructions"
    )
    assert len(v.loc["video7010", "captions"]) == 20
    assert v.loc["video7011", "captions"][3] == "a purple paint can is moving around"
    assert v.loc["video7010", "split"] == "test" and v.loc["video7010", "video_number"] == 7010
    assert not v.loc["video7010", "test_1k_a"] and v.loc["video7020", "test_1k_a"]
    assert pd.isna(v.loc["video7010", "start"])  # distributed MSR-VTT files are already clips


def test_lavis_list_one_row_per_caption(tmp_path: Path) -> None:
    df, _ = ingest(tmp_path, LAVIS, rows="caption")
    assert len(df) == 400
    row = df[df.clip_id == "video7012#7"].iloc[0]
    # Caption text is kept byte for byte, leading space included.
    assert row["text"].startswith(" in a satiny brown jacket sits by a small glass table")
    assert row["caption_index"] == 7 and row["source_id"] == "video7012"


@pytest.mark.parametrize("delimiter", [";", ","])
def test_clip4clip_jsfusion_csv(tmp_path: Path, delimiter: str) -> None:
    path = JSFUSION
    if delimiter == ",":  # the canonical CLIP4Clip file: same columns, commas
        with JSFUSION.open(newline="") as f:
            rows = list(csv.reader(f, delimiter=";"))
        path = tmp_path / "MSRVTT_JSFUSION_test.csv"
        with path.open("w", newline="") as f:
            csv.writer(f).writerows(rows)
    df, summary = ingest(tmp_path, path)
    assert len(df) == 20 and summary["rejected"] == {}
    first = df.iloc[0]
    assert (first["jsfusion_key"], first["vid_key"], first["source_id"]) == (
        "ret0", "msr9770", "video9770",
    )  # fmt: skip
    assert first["text"] == "a person is connecting something to system"
    assert df["test_1k_a"].all() and (df["split"] == "test").all()
    assert df.iloc[14]["text"].startswith("a rocket is lauching into a blue sky")


def test_official_videodatainfo_json(tmp_path: Path) -> None:
    # Built from the published layout (no official JSON rows are in the fixtures): the HF row's
    # video as a `videos` entry, two `sentences` naming it, one naming an unknown video.
    video = {k: v for k, v in HF_ROW.items() if k not in ("caption", "__index_level_0__")}
    doc = {
        "info": {"year": 2016},
        "videos": [video],
        "sentences": [
            {"caption": "a family is having conversation", "video_id": "video6513", "sen_id": 7},
            {"caption": "people talk at a table", "video_id": "video6513", "sen_id": 9},
            {"caption": "orphan", "video_id": "video42", "sen_id": 10},
        ],
    }
    path = tmp_path / "train_val_videodatainfo.json"
    path.write_text(json.dumps(doc))
    df, summary = ingest(tmp_path, path, rows="caption")
    assert df["text"].tolist() == ["a family is having conversation", "people talk at a table"]
    assert df["sen_id"].tolist() == [7, 9]
    row = df.iloc[0]
    assert (row["url_start"], row["url_end"], row["category"]) == (116.03, 126.21, 14)
    assert (row["split"], row["video_number"]) == ("validate", 6513)
    assert row["url"] == "https://www.youtube.com/watch?v=A9pM9iOuAzM"
    assert summary["rejected"] == {"missing_field": 1}


def test_hf_rows_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "msrvtt_hf.jsonl"
    extra_row = {**HF_ROW, "caption": "two people talk", "__index_level_0__": 6129, "note": "x"}
    path.write_text(json.dumps(HF_ROW) + "\n" + json.dumps(extra_row) + "\n")
    df, _ = ingest(tmp_path, path)
    (row,) = df.itertuples()
    assert row.captions.tolist() == ["a family is having conversation", "two people talk"]
    assert (row.hf_indices.tolist(), row.category, row.url_start) == ([6128, 6129], 14, 116.03)
    df, _ = ingest(tmp_path, path, rows="caption")
    assert df["hf_index"].tolist() == [6128, 6129]
    assert json.loads(df.iloc[1]["extra"]) == {"note": "x"}  # unknown fields are kept


def test_split_list_and_duplicates_are_rejected(tmp_path: Path) -> None:
    train9k = tmp_path / "MSRVTT_train.9k.csv"
    train9k.write_text("video_id\nvideo0\nvideo1\n")
    dup = tmp_path / "dup.csv"
    lines = JSFUSION.read_text().splitlines()
    dup.write_text("\n".join(lines[:3] + lines[1:2]) + "\n")
    df, summary = ingest(tmp_path, train9k, dup)
    assert len(df) == 2
    rejects = [json.loads(x) for x in (tmp_path / "m.rejects.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["line"]) for r in rejects] == [("wrong_format", 1), ("duplicate_id", 4)]
    assert "split list" in rejects[0]["reason"]
