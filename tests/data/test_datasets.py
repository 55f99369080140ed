"""ClipWindowDataset on small synthesized videos and on a shapes-world dataset.

Frame i of the "gray" video is uniformly gray at level 4 * i, so a decoded window tells which
source frames it holds; the "ramp" video's red channel grows left to right, so a crop tells where
it was taken.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from nanosora.data.datasets import ClipWindowDataset, frames_to_tensor, tensor_to_frames
from nanosora.data.manifest import write_manifest
from nanosora.shapes.world import generate_dataset
from nanosora.video.io import VideoError, write_video


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    gray = np.stack([np.full((48, 64, 3), 4 * i, np.uint8) for i in range(60)])
    write_video(root / "gray.mp4", gray, fps=10)
    write_video(root / "tall.mp4", gray[:, :, :36].transpose(0, 2, 1, 3).copy(), fps=10)
    ramp = np.zeros((20, 32, 96, 3), np.uint8)
    ramp[..., 0] = (np.arange(96) * 2.5).astype(np.uint8)
    write_video(root / "ramp.mp4", ramp, fps=10)
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


def manifest(root: Path, rows: list[dict], name: str = "m.parquet") -> Path:
    return write_manifest(pd.DataFrame(rows), root / name)


def levels(video: torch.Tensor) -> list[int]:
    """Gray level of each frame of a (C, T, H, W) item."""
    return [round(float(v)) for v in ((video.mean(dim=(0, 2, 3)) + 1) * 127.5)]


def test_item_contract_and_start_window(root: Path) -> None:
    path = manifest(root, [{"path": "gray.mp4", "text": "gray", "start": 1.0, "end": 4.0}])
    ds = ClipWindowDataset(path, num_frames=5, height=24, width=32, fps=5)
    item = ds[0]
    assert item["video"].shape == (3, 5, 24, 32) and item["video"].dtype == torch.float32
    assert item["text"] == "gray" and item["index"] == 0
    assert -1 <= item["video"].min() and item["video"].max() <= 1
    # 5 fps from a 10 fps source starting at 1.0 s: source frames 10, 12, 14, 16, 18.
    assert levels(item["video"]) == pytest.approx([40, 48, 56, 64, 72], abs=2)
    with pytest.raises(ValueError, match="4k\\+1"):
        ClipWindowDataset(path, num_frames=8, height=24, width=32, fps=5)


def test_random_window_stays_inside_the_clip_and_is_reproducible(root: Path) -> None:
    path = manifest(root, [{"path": "gray.mp4", "text": "g", "start": 1.0, "end": 4.0}])
    ds = ClipWindowDataset(path, num_frames=5, height=16, width=16, fps=5, window="random", seed=3)
    firsts = []
    for epoch in range(8):
        ds.set_epoch(epoch)
        lv = levels(ds[0]["video"])
        first = lv[0] / 4
        assert 10 - 0.6 <= first and lv[-1] / 4 <= 39 + 0.6  # window inside [1.0, 4.0)
        assert levels(ds[0]["video"]) == lv  # same (seed, epoch, index): same window
        firsts.append(round(first))
    assert len(set(firsts)) > 2


def test_in_memory_random_window_slices_the_clip_decoded_once(root: Path, monkeypatch) -> None:
    path = manifest(root, [{"path": "gray.mp4", "text": "g", "start": 1.0, "end": 4.0}])
    kw = dict(num_frames=5, height=16, width=16, fps=5, window="random", seed=3)
    ds = ClipWindowDataset(path, in_memory=True, **kw)
    ds.preload(progress=False)
    import nanosora.data.datasets as vd

    monkeypatch.setattr(vd, "read_video", lambda *a, **k: pytest.fail("decoded twice"))
    firsts = []
    for epoch in range(12):
        ds.set_epoch(epoch)
        lv = levels(ds[0]["video"])
        # 5 fps from 10 fps: every second source frame, consecutive, inside [1.0, 4.0)
        assert np.diff(lv) == pytest.approx([8, 8, 8, 8], abs=2)
        assert 40 - 2 <= lv[0] and lv[-1] <= 4 * 38 + 2
        assert levels(ds[0]["video"]) == lv  # same (seed, epoch, index): same window
        firsts.append(lv[0])
    assert len(set(firsts)) > 3
    monkeypatch.undo()
    # a clip shorter than the window holds its last frame, as when streaming
    short = manifest(
        root, [{"path": "gray.mp4", "text": "g", "start": 5.5, "end": 6.0}], "s.parquet"
    )
    video = ClipWindowDataset(short, in_memory=True, **{**kw, "num_frames": 9, "fps": 10})[0]
    assert levels(video["video"]) == pytest.approx(
        [220, 224, 228, 232, 236, 236, 236, 236, 236], abs=2
    )
    with pytest.raises(ValueError, match="random crops"):
        ClipWindowDataset(path, in_memory=True, crop="random", **kw)


def test_short_clip_holds_last_frame(root: Path) -> None:
    path = manifest(root, [{"path": "gray.mp4", "text": "g", "start": 5.5, "end": 6.0}])
    video = ClipWindowDataset(path, num_frames=9, height=16, width=16, fps=10)[0]["video"]
    assert levels(video) == pytest.approx([220, 224, 228, 232, 236, 236, 236, 236, 236], abs=2)


def test_center_and_random_crops(root: Path) -> None:
    path = manifest(root, [{"path": "ramp.mp4", "text": "r"}])
    center = ClipWindowDataset(path, num_frames=5, height=16, width=16, fps=10)[0]["video"]
    red = float((center[0].mean() + 1) * 127.5)
    assert red == pytest.approx(47.5 * 2.5, abs=4)  # the middle third of the ramp
    means = set()
    for seed in range(6):
        ds = ClipWindowDataset(
            path, num_frames=5, height=16, width=16, fps=10, crop="random", seed=seed
        )
        video = ds[0]["video"]
        # One offset for the whole clip: every frame's mean red level is the same (H.264 may
        # round single pixels differently from frame to frame; a 1 px shift moves it 2.5 levels).
        red_per_frame = (video[0].mean(dim=(1, 2)) + 1) * 127.5
        assert float(red_per_frame.max() - red_per_frame.min()) < 1.0
        means.add(round(float((video[0].mean() + 1) * 127.5)))
    assert len(means) > 3


def test_caption_choice(root: Path) -> None:
    rows = [{"path": "gray.mp4", "text": "a", "captions": ["a", "b", "c"]}]
    path = manifest(root, rows)
    first = ClipWindowDataset(path, num_frames=1, height=8, width=8, fps=10)
    assert first[0]["text"] == "a"
    ds = ClipWindowDataset(path, num_frames=1, height=8, width=8, fps=10, caption="random")
    seen = set()
    for epoch in range(20):
        ds.set_epoch(epoch)
        seen.add(ds[0]["text"])
    assert seen == {"a", "b", "c"}


def test_decode_failure_names_row_and_file(root: Path) -> None:
    path = manifest(root, [{"path": "gray.mp4", "text": "ok"}, {"path": "broken.mp4", "text": "x"}])
    ds = ClipWindowDataset(path, num_frames=1, height=8, width=8, fps=10)
    with pytest.raises(VideoError, match=r"row 1: .*broken\.mp4"):
        ds[1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root, 4, seed=3, progress=False)
    return root / "manifest.parquet"


def test_shapes_items_are_normalised_clips(shapes: Path) -> None:
    ds = ClipWindowDataset(shapes, 17, 64, 64, 8.0, crop="none", in_memory=True)
    ds.preload(progress=False)
    item = ds[2]
    assert item["video"].shape == (3, 17, 64, 64) and item["index"] == 2
    assert -1.0 <= item["video"].min() and item["video"].max() <= 1.0
    assert item["text"] == pd.read_parquet(shapes)["text"][2]


def test_resize_and_pad_short_clips(shapes: Path) -> None:
    v = ClipWindowDataset(shapes, 33, 32, 32, 8.0, crop="none")[0]["video"]
    assert v.shape == (3, 33, 32, 32)
    torch.testing.assert_close(v[:, 17:], v[:, 16:17].expand(-1, 16, -1, -1))  # last frame repeated


def test_tensor_frame_round_trip() -> None:
    frames = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8).numpy()
    assert (tensor_to_frames(frames_to_tensor(frames)) == frames).all()


def test_preloading_a_missing_file_names_row_and_path(shapes: Path, tmp_path: Path) -> None:
    df = pd.read_parquet(shapes)
    df["path"] = [str(shapes.parent / p) for p in df["path"]]
    df.loc[1, "path"] = str(tmp_path / "gone.mp4")
    df.to_parquet(tmp_path / "m.parquet")
    ds = ClipWindowDataset(tmp_path / "m.parquet", 17, 64, 64, 8.0, crop="none", in_memory=True)
    with pytest.raises(VideoError, match=r"row 1.*gone\.mp4"):
        ds.preload(progress=False)
