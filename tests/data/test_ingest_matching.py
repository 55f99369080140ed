"""Matching annotation rows to local videos, the missing list, and download lists."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from nanosora.data.ingest import IngestConfig, VideoIndex, main, youtube_ids_in_name

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
PANDA = FIXTURES / "panda70m_validation.csv"


def touch(path: Path, data: bytes = b"not decoded by ingest") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_youtube_ids_in_file_names() -> None:
    assert youtube_ids_in_name("-1hTK0wGrTg") == ["-1hTK0wGrTg"]
    assert youtube_ids_in_name("v_k_ZXmr8pmrs") == ["k_ZXmr8pmrs"]
    assert youtube_ids_in_name("A news show [-1urvnqfnfk]") == ["-1urvnqfnfk"]
    assert youtube_ids_in_name("video7010") == []


def test_index_lookup_order(tmp_path: Path) -> None:
    touch(tmp_path / "sub" / "video7010.mp4")
    touch(tmp_path / "other" / "video7010.webm")  # same stem: counted as ambiguous
    touch(tmp_path / "notes.txt")  # not a video
    index = VideoIndex(tmp_path)
    assert len(index) == 2 and index.ambiguous == 1
    assert index.find("sub/video7010.mp4", [])[1] == "path"
    assert index.find("elsewhere/video7010.mp4", [])[1] == "name"
    found, how = index.find("video7010.avi", ["video7010"])
    assert how == "id" and found.endswith("other/video7010.webm")  # sorted walk: other/ first


def test_panda_rows_matched_and_missing(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    touch(videos / "-1hTK0wGrTg.mp4")  # by relative path
    touch(videos / "yt" / "A news show [-1urvnqfnfk].webm")  # yt-dlp's default name
    touch(videos / "-AM0oWK3RBA.mkv")  # by id (another container)
    touch(videos / "-BgGhZs4K4w.mp4", b"")  # empty: a failed download
    out = tmp_path / "out" / "m.parquet"
    dl = tmp_path / "todo.csv"
    cfg = IngestConfig(
        dataset="panda70m", annotations=(PANDA,), output=out, videos=videos, download_list=dl,
        progress=False,
    )  # fmt: skip
    main(cfg)
    df = pd.read_parquet(out)
    assert len(df) == 9 and df["video_match"].value_counts().to_dict() == {
        "path": 3, "youtube_id": 3, "id": 3,
    }  # fmt: skip
    paths = dict(zip(df["source_id"], df["path"], strict=False))
    assert paths["-1hTK0wGrTg"] == "../videos/-1hTK0wGrTg.mp4"  # relative to the manifest
    assert paths["-1urvnqfnfk"] == "../videos/yt/A news show [-1urvnqfnfk].webm"
    summary = json.loads((out.parent / "m.summary.json").read_text())
    assert summary["videos"]["missing_videos"] == 17 and summary["videos"]["missing_rows"] == 51
    with (out.parent / "m.missing.csv").open() as f:
        missing = list(csv.DictReader(f))
    assert len(missing) == 17 and missing[0]["id"] == "-BgGhZs4K4w"
    assert missing[0]["reason"].startswith("empty file")
    with dl.open() as f:
        todo = list(csv.DictReader(f))
    assert len(todo) == 17 and todo[0]["url"] == "https://www.youtube.com/watch?v=-BgGhZs4K4w"
    main(IngestConfig(**{**cfg.__dict__, "keep_missing": True}))
    assert len(pd.read_parquet(out)) == 60
