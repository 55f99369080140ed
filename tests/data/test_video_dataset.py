"""ClipWindowDataset and BucketBatchSampler on small synthesized videos.

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
from torch.utils.data import DataLoader

from nanosora.data.buckets import BucketBatchSampler, assign_buckets
from nanosora.data.manifest import write_manifest
from nanosora.data.video_dataset import ClipWindowDataset
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
    import nanosora.data.video_dataset as vd

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


def test_bucket_sampler_batches_one_shape_each_sample_once() -> None:
    ratios = [0.56, 0.6, 1.0, 1.05, 1.78, 1.7, 0.5, 0.95, 1.9, 0.58]
    buckets = [(32, 32), (18, 32), (32, 18)]
    assert assign_buckets(ratios, buckets).tolist() == [1, 1, 0, 0, 2, 2, 1, 0, 2, 1]
    sampler = BucketBatchSampler(ratios, buckets, batch_size=3, seed=0)
    epoch0 = list(sampler)
    epoch1 = list(sampler)  # a new iteration is a new epoch
    for batches in (epoch0, epoch1):
        assert sorted(i for b in batches for i in b) == list(range(10))
        assert all(len({sampler.bucket_size(i) for i in b}) == 1 for b in batches)
    assert epoch0 != epoch1 and len(sampler) == len(epoch0) == 4
    sampler.set_epoch(0)
    assert list(sampler) == epoch0  # resume: same order for the same epoch
    dropping = BucketBatchSampler(ratios, buckets, batch_size=3, drop_last=True)
    assert len(dropping) == len(list(dropping)) == 3


def test_buckets_through_a_dataloader(root: Path) -> None:
    rows = [
        {"path": "gray.mp4", "text": "wide", "height": 48, "width": 64},
        {"path": "tall.mp4", "text": "tall", "height": 64, "width": 36},
        {"path": "gray.mp4", "text": "wide 2", "height": 48, "width": 64},
    ]
    buckets = [(24, 32), (32, 24)]
    ds = ClipWindowDataset(
        manifest(root, rows), num_frames=5, height=24, width=32, fps=10, buckets=buckets
    )
    assert [ds[i]["video"].shape[2:] for i in range(3)] == [(24, 32), (32, 24), (24, 32)]
    sampler = BucketBatchSampler(ds.aspect_ratios(pd.read_parquet(root / "m.parquet")), buckets, 2)
    shapes = [tuple(b["video"].shape) for b in DataLoader(ds, batch_sampler=sampler)]
    assert sorted(shapes) == [(1, 3, 5, 32, 24), (2, 3, 5, 24, 32)]
