"""The probe reads colour, shape and direction back (>= 99% each, on mp4 and on raw renders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanosora.shapes.probe import ProbeResult, adherence, nearest_color, probe_frames, probe_video
from nanosora.shapes.world import (
    COLORS,
    ClipSpec,
    clip_rng,
    generate_dataset,
    render,
    sample_spec,
)
from nanosora.video import read_video, write_video

NUM_CLIPS = 320
SEED = 11


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """NUM_CLIPS clips over all 96 compositions, H.264 at the default crf."""
    out = generate_dataset(
        tmp_path_factory.mktemp("probe"), NUM_CLIPS, seed=SEED, split="all", progress=False
    )
    return out, pd.read_parquet(out / "manifest.parquet")


def targets(manifest: pd.DataFrame) -> list[tuple[str, str, str]]:
    return list(zip(manifest["color"], manifest["shape"], manifest["direction"], strict=True))


def test_probe_reads_mp4_clips(dataset: tuple[Path, pd.DataFrame]) -> None:
    out, manifest = dataset
    assert manifest["color"].nunique() == 8 and manifest["shape"].nunique() == 3
    results = [probe_video(out / p) for p in manifest["path"]]
    scores = adherence(results, targets(manifest))
    assert scores["n"] == NUM_CLIPS
    assert scores["color"] >= 0.99, scores
    assert scores["shape"] >= 0.99, scores
    assert scores["direction"] >= 0.99, scores
    assert all(r.found_frames == 17 for r in results)


def test_probe_reads_rendered_frames(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, manifest = dataset
    specs = [sample_spec(clip_rng(SEED, i), "all") for i in range(NUM_CLIPS)]
    assert [s.caption for s in specs] == list(manifest["text"])  # same clips as the mp4 test
    results = [probe_frames(render(s)) for s in specs]
    scores = adherence(results, targets(manifest))
    assert min(scores["color"], scores["shape"], scores["direction"]) >= 0.99, scores


def test_probe_fill_ratio_and_displacement() -> None:
    spec = ClipSpec("white", "square", "right", 16, 2.0, 4.0, 20.0, "")
    result = probe_frames(render(spec))
    assert result.fill_ratio == pytest.approx(1.0, abs=0.02)  # the 3x3 median trims 4 corners
    assert result.displacement[0] == pytest.approx(32.0, abs=0.5)
    assert result.displacement[1] == pytest.approx(0.0, abs=0.5)
    up = probe_frames(render(ClipSpec("blue", "triangle", "up", 18, 2.0, 20.0, 40.0, "")))
    assert (up.shape, up.direction) == ("triangle", "up") and up.displacement[1] < -30


def test_probe_all_black_returns_none() -> None:
    result = probe_frames(np.zeros((17, 64, 64, 3), np.uint8))
    assert result == ProbeResult(None, None, None, 0.0, (0.0, 0.0), 0)
    specks = np.zeros((17, 64, 64, 3), np.uint8)
    specks[:, 5, 7] = 255  # two isolated hot pixels are noise, not an object
    specks[:, 40, 50] = 200
    assert probe_frames(specks).color is None


def test_probe_black_video_file(tmp_path: Path) -> None:
    write_video(tmp_path / "black.mp4", np.zeros((17, 64, 64, 3), np.uint8), fps=8)
    result = probe_video(tmp_path / "black.mp4")
    assert (result.color, result.shape, result.direction, result.found_frames) == (
        None,
        None,
        None,
        0,
    )


def test_probe_static_object_has_no_direction() -> None:
    frames = np.repeat(
        render(ClipSpec("red", "circle", "left", 16, 2.0, 40.0, 20.0, ""))[:1], 17, 0
    )
    result = probe_frames(frames)
    assert (result.color, result.shape, result.direction) == ("red", "circle", None)


def test_probe_colours_survive_yuv420(tmp_path: Path) -> None:
    """Each palette colour as a flat patch through H.264 yuv420p still maps to itself."""
    for name, rgb in COLORS.items():
        frames = np.zeros((5, 32, 32, 3), np.uint8)
        frames[:, 8:24, 8:24] = rgb
        write_video(tmp_path / "c.mp4", frames, fps=8, crf=28)
        back = read_video(tmp_path / "c.mp4")
        assert nearest_color(np.median(back[:, 10:22, 10:22].reshape(-1, 3), axis=0)) == name


def test_adherence() -> None:
    r = [
        ProbeResult("red", "circle", "left", 0.78, (-30.0, 0.0), 17),
        ProbeResult("red", "square", "left", 1.0, (-30.0, 0.0), 17),
        ProbeResult(None, None, None, 0.0, (0.0, 0.0), 0),
        ProbeResult("blue", "circle", "up", 0.78, (0.0, -30.0), 17),
    ]
    t = [("red", "circle", "left")] * 3 + [("blue", "circle", "down")]
    assert adherence(r, t) == {"color": 0.75, "shape": 0.5, "direction": 0.5, "joint": 0.25, "n": 4}
    with pytest.raises(ValueError):
        adherence(r, t[:2])


def test_probe_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        probe_frames(np.zeros((17, 64, 64, 3), np.float32))


def test_probe_reads_the_new_diamond_concept(tmp_path: Path) -> None:
    """Diamonds (the fine-tuning demo's new shape) are read back from mp4 like the base shapes."""
    out = generate_dataset(tmp_path, 64, seed=3, shapes=("diamond",), progress=False)
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["shape"]) == {"diamond"} and manifest["color"].nunique() == 8
    scores = adherence([probe_video(out / p) for p in manifest["path"]], targets(manifest))
    assert min(scores["color"], scores["shape"], scores["direction"]) >= 0.99, scores
    with pytest.raises(ValueError, match="unknown shapes"):
        generate_dataset(tmp_path / "bad", 1, shapes=("hexagon",), progress=False)
