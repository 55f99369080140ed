"""`nanosora clips`: frame-exact cuts by stream copy or re-encode, shared ranges, resume, rejects.

Source videos are synthesized: frame i shows i in binary as 8 horizontal black/white bands, so a
decoded clip tells exactly which source frames it holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from nanosora.data.clips import ClipsConfig, PacketIndex, main
from nanosora.data.manifest import write_manifest
from nanosora.video.io import read_video

FPS, FRAMES, H, W = 10, 60, 48, 64


def index_image(i: int) -> np.ndarray:
    img = np.zeros((H, W, 3), np.uint8)
    for bit in range(8):
        if (i >> bit) & 1:
            img[bit * 6 : bit * 6 + 6] = 255
    return img


def frame_indices(path: Path) -> list[int]:
    frames = read_video(path)
    bands = frames[:, :, :, 0].reshape(len(frames), 8, 6, W).mean(axis=(2, 3)) > 128
    return [int(sum(int(b) << k for k, b in enumerate(row))) for row in bands]


def write_source(path: Path, bframes: int) -> Path:
    """10 fps, a keyframe every second (GOP 10), with or without B-frames."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"g": "10", "keyint_min": "10", "sc_threshold": "0", "bf": str(bframes),
                          "crf": "10"}  # fmt: skip
        for i in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(index_image(i), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    write_source(root / "bframes.mp4", bframes=2)
    write_source(root / "nob.mp4", bframes=0)
    return root


def make_manifest(root: Path, rows: list[tuple[str, float | None, float | None, str]]) -> Path:
    df = pd.DataFrame(rows, columns=["path", "start", "end", "clip_id"])
    df["text"] = [f"caption {i}" for i in range(len(df))]
    return write_manifest(df, root / "long.parquet")


def test_packet_index_sees_keyframes_and_reordering(sources: Path) -> None:
    index = PacketIndex.scan(str(sources / "bframes.mp4"), until=100)
    assert index.key.sum() == 6 and index.fps == 10.0
    assert np.allclose(np.sort(index.time), np.arange(FRAMES) / FPS)
    assert not np.all(np.diff(index.pts) > 0)  # B-frames: decode order != display order


def test_copy_reencode_and_frame_exactness(sources: Path, tmp_path: Path) -> None:
    manifest = make_manifest(
        sources,
        [
            ("bframes.mp4", 1.0, 3.0, "aligned"),  # keyframe to keyframe: copy
            ("bframes.mp4", 1.25, 2.95, "inside"),  # starts between keyframes: re-encode
            ("bframes.mp4", 1.0, 2.55, "bend"),  # ends mid-GOP with B-frames: re-encode
            ("nob.mp4", 1.0, 2.55, "nobend"),  # ends mid-GOP, no reordering: copy
            ("bframes.mp4", 1.0, 3.0, "same range, 2nd caption"),
        ],
    )
    out = main(ClipsConfig(manifest=manifest, out_dir=tmp_path / "clips", progress=False))
    df = pd.read_parquet(out)
    assert df["cut"].tolist() == ["copy", "reencode", "reencode", "copy", "copy"]
    clips = [tmp_path / "clips" / p for p in df["path"]]
    assert frame_indices(clips[0]) == list(range(10, 30))
    assert frame_indices(clips[1]) == list(range(13, 30))  # t = 1.3 ... 2.9
    assert frame_indices(clips[2]) == list(range(10, 26))
    assert frame_indices(clips[3]) == list(range(10, 26))
    assert df["path"].iloc[4] == df["path"].iloc[0]  # one range, one file
    assert df["num_frames"].tolist() == [20, 17, 16, 16, 20]
    assert (df["source_start"].iloc[1], df["source_end"].iloc[1]) == (1.25, 2.95)
    assert df["start"].isna().all() and (df["fps"] == 10.0).all()
    assert df["source_path"].iloc[0] == "../../src0/bframes.mp4" or df["source_path"].iloc[
        0
    ].endswith("bframes.mp4")


def test_resume_rejects_and_passthrough(sources: Path, tmp_path: Path) -> None:
    manifest = make_manifest(
        sources,
        [
            ("nob.mp4", 2.0, 4.0, "a"),
            ("gone.mp4", 0.0, 1.0, "missing"),
            ("nob.mp4", 7.0, 9.0, "past the end"),
            ("nob.mp4", None, None, "whole"),
        ],
    )
    cfg = ClipsConfig(manifest=manifest, out_dir=tmp_path / "clips", progress=False)
    df = pd.read_parquet(main(cfg))
    assert df["clip_id"].tolist() == ["a", "whole"]
    assert df["cut"].tolist() == ["copy", "none"]
    rejects = [
        json.loads(x)
        for x in (tmp_path / "clips" / "manifest.rejects.jsonl").read_text().splitlines()
    ]
    assert [(r["row"], r["reason"].split(":")[0]) for r in rejects] == [
        (1, "source video not found"), (2, "ClipError"),
    ]  # fmt: skip
    clip = tmp_path / "clips" / df["path"].iloc[0]
    stamp = clip.stat().st_mtime_ns
    again = pd.read_parquet(main(cfg))  # resume: nothing is cut again
    assert clip.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, df)
    clip.unlink()  # a lost file is cut again
    main(cfg)
    assert frame_indices(clip) == list(range(20, 40))
