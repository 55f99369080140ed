"""Shared inputs: a small synthetic manifest (multi-scene, short, wide, black) plus bad files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nanosora.curate.synth import make_dataset

BASE_RECIPE = """
dataset_path: {dataset}
export_path: {export}
np: {np}
process:
  - video_duration_filter: {{min_duration: 3, max_duration: 100, video_backend: av}}
  - video_resolution_filter: {{min_width: 32, min_height: 32}}
  - video_aspect_ratio_filter: {{min_ratio: "9/21", max_ratio: "21/9"}}
  - video_motion_score_filter: {{min_score: 0.25, sampling_fps: 2}}
  - video_split_by_scene_mapper: {{detector: ContentDetector, threshold: 27, min_scene_len: 15}}
  - words_num_filter: {{min_num: 3}}
"""


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 synthetic videos (128x128, 24 fps) and a manifest.jsonl that also lists 5 bad inputs."""
    root = tmp_path_factory.mktemp("curate_data")
    manifest = make_dataset(root, 8, seed=3, scale=2)
    bad = root / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "garbage.mp4").write_bytes(b"\x00\x01not a video at all" * 100)
    (bad / "notes.mp4").write_text("this is text with a video suffix\n")
    good = root / "videos" / "0000_multi.mp4"
    (bad / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    lines = manifest.read_text().splitlines()
    for name in ("empty", "garbage", "notes", "truncated", "missing"):
        lines.append(json.dumps({"path": f"bad/{name}.mp4", "text": f"a broken {name} file here",
                                 "kind": "bad"}))  # fmt: skip
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def write_recipe(path: Path, dataset: Path, export: Path, np: int = 1, extra: str = "") -> Path:
    """A recipe file running the benchmark pipeline (+ ``extra`` process lines)."""
    path.write_text(BASE_RECIPE.format(dataset=dataset, export=export, np=np) + extra)
    return path


def copy_dataset(src_manifest: Path, dst: Path) -> Path:
    """A private copy of the dataset folder (tests that write next to it stay independent)."""
    shutil.copytree(src_manifest.parent, dst)
    return dst / src_manifest.name
