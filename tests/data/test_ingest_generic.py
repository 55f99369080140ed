"""Generic tables, Open-Sora CSV and Data-Juicer jsonl: in and out without loss."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nanosora.data.ingest import IngestConfig, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
DJ_DEMO = FIXTURES / "datajuicer_demo-dataset-videos.jsonl"
DJ_RAY = FIXTURES / "datajuicer_process_video_on_ray_demo-dataset.jsonl"


def ingest(dataset: str, src: Path, out: Path, **kw: object) -> Path:
    return main(IngestConfig(dataset=dataset, annotations=(src,), output=out, progress=False, **kw))


def opensora_frame() -> pd.DataFrame:
    """An Open-Sora metadata table with the awkward cells real ones have."""
    return pd.DataFrame(
        {
            "path": ["/data/clips/a.mp4", "/data/clips/b.mp4", "/data/clips/c.mp4"],
            "id": ["00123", "00124", "x7"],  # leading zeros must survive
            "relpath": ["a.mp4", "b.mp4", "c.mp4"],
            "num_frames": [129, 240, 51],
            "height": [720, 1080, 480],
            "width": [1280, 1920, 848],
            "aspect_ratio": [0.5625, 0.5625, 0.5660377358490566],
            "fps": [29.97002997002997, 24.0, 30.0],
            "resolution": [921600, 2073600, 407040],
            "aes": [5.125, None, 4.0],
            "timestamp": ["[('0:00:00.000', '0:00:05.005')]", "[]", "[('0:00:01.000', '0:00:02.000')]"],
            "text": ['a dog, "running"', "一只猫在睡觉", "line one\nline two"],
        }
    )  # fmt: skip


def test_opensora_csv_round_trip_is_byte_identical(tmp_path: Path) -> None:
    src = tmp_path / "meta.csv"
    opensora_frame().to_csv(src, index=False)  # how Open-Sora writes it
    manifest = ingest("opensora", src, tmp_path / "m.parquet")
    df = pd.read_parquet(manifest)
    assert df["id"].tolist() == ["00123", "00124", "x7"]
    assert df["num_frames"].dtype == "int64" and df["fps"].iloc[0] == 29.97002997002997
    assert df["timestamp"].iloc[0] == "[('0:00:00.000', '0:00:05.005')]"  # tuples stay text
    back = ingest("generic", manifest, tmp_path / "back.csv", to="opensora")
    assert back.read_bytes() == src.read_bytes()
    direct = ingest("opensora", src, tmp_path / "direct.csv")
    assert direct.read_bytes() == src.read_bytes()


def manifest_frame() -> pd.DataFrame:
    """A manifest with every kind of column the adapters write."""
    return pd.DataFrame(
        {
            "path": ["v/a.mp4", "v/b.mp4"],
            "text": ["a red car", "雨中的街道, at night"],
            "start": [1.5, 0.0],
            "end": [3.25, 12.0],
            "source": ["panda70m", "youku"],
            "clip_index": [0, 3],
            "matching_score": [0.50927734375, 0.25],
            "test_1k_a": [True, False],
            "captions": [["a red car", "a car"], ["雨中的街道"]],
            "shot_boundaries": [[[0.0, 3.069]], [[0.0, 2.7], [2.736, 4.838]]],
            "note": [None, "kept"],
        }
    )


def test_manifest_to_opensora_csv_and_back(tmp_path: Path) -> None:
    original = manifest_frame()
    original.to_parquet(tmp_path / "m.parquet", index=False)
    csv_path = ingest("generic", tmp_path / "m.parquet", tmp_path / "os.csv", to="opensora")
    again = pd.read_parquet(ingest("opensora", csv_path, tmp_path / "again.parquet"))
    pd.testing.assert_frame_equal(again.map(_plain), original.map(_plain))
    assert again["clip_index"].dtype == "int64" and again["test_1k_a"].dtype == "bool"


def _plain(value: object) -> object:
    """numpy arrays (parquet lists) as lists, so frames compare by value."""
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


@pytest.mark.parametrize("fixture", [DJ_DEMO, DJ_RAY], ids=["demo", "ray"])
def test_datajuicer_round_trip(tmp_path: Path, fixture: Path) -> None:
    src = tmp_path / "data" / fixture.name
    src.parent.mkdir()
    shutil.copy(fixture, src)
    manifest = ingest("datajuicer", src, tmp_path / "data" / "m.parquet")
    df = pd.read_parquet(manifest)
    if fixture == DJ_DEMO:
        assert df["text"].tolist()[:2] == ["a cartoon", "一段卡通"]
        assert df["path"].iloc[0] == "../../tests/ops/data/video1.mp4"
    else:  # "./videos/..." and the source's stray "'}" after the end-of-chunk token
        assert df["text"].tolist() == ["10s videos", "23s videos", "46s videos"]
        assert df["path"].iloc[0] == "videos/video1.mp4"
    back = ingest("generic", manifest, src.with_name("back.jsonl"), to="datajuicer")
    original = [json.loads(x) for x in src.read_text().splitlines()]
    assert [json.loads(x) for x in back.read_text().splitlines()] == original
    # A manifest elsewhere: paths are re-based to it, and back again on export.
    moved = ingest("datajuicer", src, tmp_path / "elsewhere" / "deep" / "m.parquet")
    first = pd.read_parquet(moved)["path"].iloc[0]
    assert (moved.parent / first).resolve() == (src.parent / original[0]["videos"][0]).resolve()


def test_manifest_to_datajuicer_and_back(tmp_path: Path) -> None:
    original = manifest_frame()
    original.to_parquet(tmp_path / "m.parquet", index=False)
    dj = ingest("generic", tmp_path / "m.parquet", tmp_path / "out" / "dj.jsonl", to="datajuicer")
    first = json.loads(dj.read_text().splitlines()[0])
    assert (
        first["videos"] == ["../v/a.mp4"]
        and first["text"] == "<__dj__video> a red car <|__dj__eoc|>"
    )
    assert "note" not in first  # missing values are left out, as Data-Juicer samples do
    again = pd.read_parquet(ingest("datajuicer", dj, tmp_path / "again.parquet"))
    pd.testing.assert_frame_equal(again[original.columns].map(_plain), original.map(_plain))


def test_generic_column_mapping(tmp_path: Path) -> None:
    src = tmp_path / "clips.csv"
    src.write_text(
        "video;caption;t0;t1;score\nx.mp4;a boat;0:00:01.500;0:00:04.000;0.9\ny.mp4;;1;2;0.1\n"
    )
    columns = (("path", "video"), ("text", "caption"), ("start", "t0"), ("end", "t1"))
    df = pd.read_parquet(ingest("generic", src, tmp_path / "m.parquet", columns=columns))
    assert df.columns.tolist() == ["path", "text", "start", "end", "score"]
    assert df.iloc[0].tolist() == ["x.mp4", "a boat", 1.5, 4.0, 0.9]
    assert df.iloc[1]["text"] == "" and df.iloc[1]["start"] == 1.0
    jsonl = tmp_path / "clips.jsonl"
    jsonl.write_text(
        json.dumps({"file": "z.mp4", "caption": "c", "tags": ["a", "b"], "meta": {"k": 1}}) + "\n"
    )
    columns = (("path", "file"), ("text", "caption"))
    df = pd.read_parquet(ingest("generic", jsonl, tmp_path / "j.parquet", columns=columns))
    assert df.iloc[0]["tags"].tolist() == ["a", "b"] and json.loads(df.iloc[0]["meta"]) == {"k": 1}
    back = ingest("generic", tmp_path / "j.parquet", tmp_path / "j.jsonl")
    assert json.loads(back.read_text())["meta"] == {"k": 1}  # JSON-text columns decoded again
    with pytest.raises(ValueError, match="no 'path' column"):
        ingest("generic", jsonl, tmp_path / "k.parquet")
