"""VideoInstruct-100K ingest: QA pairs grouped per video, descriptive answers as captions."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nanosora.data.ingest import IngestConfig, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
IDS = FIXTURES / "videoinstruct100k_train_video_ids.first20.txt"

# The row quoted in videoinstruct100k_row_excerpt_from_data-juicer_video_chatgpt_to_dj.py.txt
# (a Python repr wrapped over comment lines; joined here with single spaces).
REAL = {
    "q": "What are the main activities that take place in the video?",
    "a": "The main activities that take place in the video are the preparation of camera "
    "equipment by a man, a group of men riding a helicopter, and a man sailing a boat through "
    "the water.",
    "video_id": "v_k_ZXmr8pmrs",
}
# Built in the published layout (no more raw rows are public): a description-based question, a
# creative prompt, and a second video with only a description-based pair.
BUILT = [
    {"q": "What color is the helicopter?", "a": "The helicopter is red.", "video_id": "v_k_ZXmr8pmrs"},
    {"q": "Describe the video in detail.", "a": "A man films a boat at sea.", "video_id": "v_k_ZXmr8pmrs"},
    {"q": "How many people are in the boat?", "a": "Two.", "video_id": "v_mTDRTiTnsjQ"},
]  # fmt: skip


def ingest(tmp_path: Path, *files: Path, **kw: object) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / "m.parquet"
    cfg = IngestConfig(dataset="videoinstruct", annotations=files, output=out, progress=False, **kw)
    main(cfg)
    return pd.read_parquet(out), json.loads((tmp_path / "m.summary.json").read_text())


def write_json(tmp_path: Path, records: list) -> Path:
    path = tmp_path / "VideoInstruct_Dataset.json"
    path.write_text(json.dumps(records))
    return path


def test_pairs_grouped_per_video(tmp_path: Path) -> None:
    df, summary = ingest(tmp_path, write_json(tmp_path, [REAL, *BUILT]))
    assert len(df) == 2 and summary["records"] == 2
    video = df.iloc[0]
    assert (video["source_id"], video["youtube_id"]) == ("v_k_ZXmr8pmrs", "k_ZXmr8pmrs")
    assert video["path"] == "v_k_ZXmr8pmrs.mp4"
    assert video["url"] == "https://www.youtube.com/watch?v=k_ZXmr8pmrs"
    assert video["text"] == REAL["a"]
    assert video["captions"].tolist() == [REAL["a"], "A man films a boat at sea."]
    assert video["caption_questions"].tolist() == [REAL["q"], "Describe the video in detail."]
    assert [dict(p) for p in video["qa"]] == [{"q": BUILT[0]["q"], "a": BUILT[0]["a"]}]
    other = df.iloc[1]  # no descriptive pair: kept, caption-less, its QA intact
    assert other["text"] == "" and len(other["qa"]) == 1


def test_one_row_per_caption(tmp_path: Path) -> None:
    df, _ = ingest(tmp_path, write_json(tmp_path, [REAL, *BUILT]), rows="caption")
    assert df["clip_id"].tolist() == ["v_k_ZXmr8pmrs#0", "v_k_ZXmr8pmrs#1", "v_mTDRTiTnsjQ"]
    assert df.iloc[1]["question"] == "Describe the video in detail."


def test_train_video_id_list(tmp_path: Path) -> None:
    urls = tmp_path / "urls.txt"
    df, summary = ingest(tmp_path, IDS, download_list=urls)
    assert len(df) == 20 and (df["text"] == "").all()
    assert (df.iloc[0]["source_id"], df.iloc[0]["youtube_id"]) == ("v_mTDRTiTnsjQ", "mTDRTiTnsjQ")
    assert df.iloc[7]["youtube_id"] == "xDRvD_-fvd8"
    lines = urls.read_text().splitlines()
    assert len(lines) == 20 and lines[-1] == "https://www.youtube.com/watch?v=modITAJlP_0"


def test_malformed_pairs_and_wrong_format(tmp_path: Path) -> None:
    broken = [REAL, {"q": "What?", "video_id": "v_x"}, {"q": 1, "a": "b", "video_id": "v_y"}]
    df, summary = ingest(tmp_path, write_json(tmp_path, broken))
    assert len(df) == 1 and summary["rejected"] == {"missing_field": 2}
    rejects = [json.loads(x) for x in (tmp_path / "m.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, "a"), (3, "q")]
    not_list = tmp_path / "obj.json"
    not_list.write_text('{"q": "a"}')
    df, summary = ingest(tmp_path, not_list)
    assert len(df) == 0 and summary["rejected"] == {"wrong_format": 1}
