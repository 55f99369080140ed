"""Shot2Story ingest: per-shot and per-video rows, with the meta CSV joined.

The fixtures hold no Shot2Story rows (its annotations are only on Hugging Face), so the JSON
below is built from the published layout in bytedance/Shot2Story DATA.md: video, image_id, id,
whole_caption, whole_ASR, nvid, video_names, audio_captions, captions, ASR. Its clip ids and the
meta rows are real: the first rows of data/annotations/20k_meta.csv at commit 279fe277 of
bytedance/Shot2Story; the captions and frame numbers are invented.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from nanosora.data.ingest import IngestConfig, main

META = """clip_id,categories,duration,youtube_id
LEwayCpIk20.78,['Film & Animation'],"['00:12:10.470', '00:12:23.490']",LEwayCpIk20
R2-Usq--J3U.2,['News & Politics'],"['00:00:18.740', '00:00:38.120']",R2-Usq--J3U
"""
VIDEOS = [
    {
        "video": "LEwayCpIk20.78.mp4",
        "image_id": "LEwayCpIk20.78.mp4",
        "id": 0,
        "whole_caption": "A man walks into a room, then talks to a woman at a table.",
        "whole_ASR": "hello there",
        "nvid": "LEwayCpIk20.78.mp4",
        "video_names": ["LEwayCpIk20.78_0_120.mp4", "LEwayCpIk20.78_121_300.mp4"],
        "audio_captions": ["", "the man greets her"],
        "captions": ["A man walks into a room.", "He talks to a woman at a table."],
        "ASR": ["", "hello there"],
    },
    {
        "video": "R2-Usq--J3U.2.mp4",
        "image_id": "R2-Usq--J3U.2.mp4",
        "id": 1,
        "whole_caption": "A news anchor speaks.",
        "whole_ASR": "",
        "nvid": "R2-Usq--J3U.2.mp4",
        "video_names": ["R2-Usq--J3U.2_0_465.mp4"],
        "audio_captions": ["an anchor reads the news"],
        "captions": ["A news anchor speaks."],
        "ASR": ["good evening"],
    },
    {
        "video": "bad.mp4",
        "video_names": ["bad_0_1.mp4"],
        "captions": ["a", "b"],
        "whole_caption": "x",
    },
]


def ingest(tmp_path: Path, rows: str) -> tuple[pd.DataFrame, dict]:
    (tmp_path / "20k_meta.csv").write_text(META)
    ann = tmp_path / "20k_train.json"
    ann.write_text(json.dumps(VIDEOS))
    out = tmp_path / "m.parquet"
    cfg = IngestConfig(
        dataset="shot2story", annotations=(ann,), output=out, rows=rows,
        meta=tmp_path / "20k_meta.csv", progress=False,
    )  # fmt: skip
    main(cfg)
    return pd.read_parquet(out), json.loads((tmp_path / "m.summary.json").read_text())


def test_one_row_per_shot(tmp_path: Path) -> None:
    df, summary = ingest(tmp_path, "shot")
    assert len(df) == 3 and summary["rejected"] == {"length_mismatch": 1}
    shot = df.iloc[1]
    assert (shot["path"], shot["source_id"]) == (
        "LEwayCpIk20.78_121_300.mp4",
        "LEwayCpIk20.78_121_300",
    )
    assert shot["text"] == "He talks to a woman at a table."
    assert (shot["video"], shot["shot_index"], shot["start_frame"], shot["end_frame"]) == (
        "LEwayCpIk20.78.mp4", 1, 121, 300,
    )  # fmt: skip
    assert (shot["audio_caption"], shot["asr"]) == ("the man greets her", "hello there")
    assert shot["youtube_id"] == "LEwayCpIk20" and shot["categories"].tolist() == [
        "Film & Animation"
    ]
    assert (shot["url_start"], shot["url_end"]) == (730.47, 743.49)
    assert shot["whole_caption"].startswith("A man walks into a room, then")


def test_one_row_per_video(tmp_path: Path) -> None:
    df, _ = ingest(tmp_path, "video")
    assert df["source_id"].tolist() == ["LEwayCpIk20.78", "R2-Usq--J3U.2"]
    video = df.iloc[0]
    assert video["path"] == "LEwayCpIk20.78.mp4" and video["text"].startswith("A man walks")
    assert video["captions"].tolist() == VIDEOS[0]["captions"]
    assert [f.tolist() for f in video["shot_frames"]] == [[0, 120], [121, 300]]
    assert video["shot_asr"].tolist() == ["", "hello there"] and video["asr"] == "hello there"
    assert (df.iloc[1]["url_start"], df.iloc[1]["url_end"]) == (18.74, 38.12)
    assert df.iloc[1]["shot2story_id"] == 1
