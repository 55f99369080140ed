"""ManifestClips: fixed-shape clips from a manifest, with errors that name the row and the file."""

import pandas as pd
import pytest
import torch

from nanosora.data.datasets import ManifestClips, frames_to_tensor, tensor_to_frames
from nanosora.shapes.world import generate_dataset
from nanosora.video.io import VideoError


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_dataset(root, 4, seed=3, progress=False)
    return root / "manifest.parquet"


def test_items_are_normalised_clips(shapes):
    ds = ManifestClips(shapes, 17, 64, 64, 8.0, progress=False)
    item = ds[2]
    assert item["video"].shape == (3, 17, 64, 64) and item["index"] == 2
    assert -1.0 <= item["video"].min() and item["video"].max() <= 1.0
    assert item["text"] == pd.read_parquet(shapes)["text"][2]


def test_resize_and_pad_short_clips(shapes):
    ds = ManifestClips(shapes, 33, 32, 32, 8.0, in_memory=False)
    v = ds[0]["video"]
    assert v.shape == (3, 33, 32, 32)
    torch.testing.assert_close(v[:, 17:], v[:, 16:17].expand(-1, 16, -1, -1))  # last frame repeated


def test_tensor_frame_round_trip():
    frames = torch.randint(0, 256, (5, 8, 8, 3), dtype=torch.uint8).numpy()
    assert (tensor_to_frames(frames_to_tensor(frames)) == frames).all()


def test_missing_file_names_row_and_path(shapes, tmp_path):
    df = pd.read_parquet(shapes)
    df["path"] = [str(shapes.parent / p) for p in df["path"]]
    df.loc[1, "path"] = str(tmp_path / "gone.mp4")
    df.to_parquet(tmp_path / "m.parquet")
    with pytest.raises(VideoError, match=r"row 1.*gone\.mp4"):
        ManifestClips(tmp_path / "m.parquet", 17, 64, 64, 8.0, progress=False)
