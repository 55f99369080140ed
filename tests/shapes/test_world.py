"""Shapes world: the DESIGN.md section 3 definition, dataset determinism, resume, captions."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanosora.shapes.captions import (
    DIRECTION_WORDS,
    SHAPE_WORDS,
    TEMPLATES,
    canonical_caption,
    caption,
    parse_prompt,
)
from nanosora.shapes.world import (
    ALL_COMPOSITIONS,
    COLORS,
    DIRECTIONS,
    HELD_OUT,
    NUM_FRAMES,
    SHAPES,
    SIZE,
    clip_rng,
    compositions,
    eval_prompts,
    generate_dataset,
    render,
    sample_spec,
    shape_mask,
)
from nanosora.video import read_video


def specs(num: int, split: str = "all", seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [sample_spec(rng, split) for _ in range(num)]


def test_constants_match_design() -> None:
    assert COLORS["orange"] == (250, 140, 30) and COLORS["white"] == (235, 235, 235)
    assert len(COLORS) == 8 and len(SHAPES) == 3 and len(DIRECTIONS) == 4
    assert (NUM_FRAMES, SIZE) == (17, 64) and (NUM_FRAMES - 1) % 4 == 0
    assert len(HELD_OUT) == 8 and HELD_OUT <= set(ALL_COMPOSITIONS)
    assert len(compositions("train")) == 88 and len(compositions("heldout")) == 8


def test_train_never_yields_held_out_and_heldout_only_yields_them() -> None:
    train = {(s.color, s.shape, s.direction) for s in specs(3000, "train")}
    assert not train & HELD_OUT
    assert len(train) == 88  # and every training composition does occur
    heldout = {(s.color, s.shape, s.direction) for s in specs(300, "heldout")}
    assert heldout == HELD_OUT


def test_sizes_and_speeds_in_range() -> None:
    for s in specs(2000):
        assert 14 <= s.size_px <= 20 and isinstance(s.size_px, int)
        assert 1.5 <= s.speed <= 2.5


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1


def test_render_object_fully_inside_and_exact_colour() -> None:
    for spec in specs(300, seed=1):
        frames = render(spec)
        assert frames.shape == (17, 64, 64, 3) and frames.dtype == np.uint8
        color = np.array(COLORS[spec.color], np.uint8)
        for k, frame in enumerate(frames):
            x, y = spec.position(k)
            assert 0 <= x and x + spec.size_px <= SIZE and 0 <= y and y + spec.size_px <= SIZE
            mask = frame.any(axis=-1)
            # Nothing clipped: the same shape drawn with a 16 px margin has the same area.
            assert mask.sum() == shape_mask(spec.shape, x + 16, y + 16, spec.size_px, 96).sum()
            # Hard edges: every object pixel is exactly the palette colour, the rest is black.
            assert (frame[mask] == color).all()
            cx, cy = int(x + spec.size_px / 2), int(y + 2 * spec.size_px / 3)
            assert (frame[cy, cx] == color).all()
            _, _, w, h = _bbox(mask)
            assert spec.size_px - 1 <= w <= spec.size_px and spec.size_px - 1 <= h <= spec.size_px


def test_render_motion_is_constant_speed_in_direction() -> None:
    for spec in specs(200, seed=2):
        frames = render(spec)
        first, last = _bbox(frames[0].any(-1)), _bbox(frames[-1].any(-1))
        dx, dy = last[0] - first[0], last[1] - first[1]
        vx, vy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[spec.direction]
        travel = spec.speed * (NUM_FRAMES - 1)
        assert abs(dx - vx * travel) <= 1.5 and abs(dy - vy * travel) <= 1.5


def test_shape_fill_ratios() -> None:
    expected = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}
    for shape, ratio in expected.items():
        mask = shape_mask(shape, 10.3, 20.6, 18)
        _, _, w, h = _bbox(mask)
        assert mask.sum() / (w * h) == pytest.approx(ratio, abs=0.08)
    tri = shape_mask("triangle", 10.0, 10.0, 20)
    rows = tri.sum(axis=1)[tri.any(axis=1)]
    assert rows[0] < rows[-1] / 4  # apex up


def read_clips(out: Path) -> np.ndarray:
    manifest = pd.read_parquet(out / "manifest.parquet")
    return np.stack([read_video(out / p) for p in manifest["path"]])


def test_generate_dataset_manifest(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path / "ds", num=5, seed=3, split="all", progress=False)
    m = pd.read_parquet(out / "manifest.parquet")
    assert list(m.columns) == [
        "path", "text", "color", "shape", "direction", "size_px", "speed", "x0", "y0",
        "num_frames", "fps", "height", "width", "source", "source_id", "split",
    ]  # fmt: skip
    assert list(m["path"]) == [f"clips/{i:06d}.mp4" for i in range(5)]
    assert all((out / p).is_file() for p in m["path"])
    for col in ("size_px", "num_frames", "height", "width"):
        assert pd.api.types.is_integer_dtype(m[col]), col
    for col in ("speed", "x0", "y0", "fps"):
        assert pd.api.types.is_float_dtype(m[col]), col
    assert (m["source"] == "shapes").all() and m["source_id"].is_unique
    assert set(m["split"]) <= {"train", "heldout"}
    assert (m["num_frames"] == 17).all() and (m["fps"] == 8.0).all()
    for row in m.itertuples():
        assert parse_prompt(row.text) == (row.color, row.shape, row.direction)
        assert row.split == (
            "heldout" if (row.color, row.shape, row.direction) in HELD_OUT else "train"
        )


def test_generate_dataset_is_deterministic_and_worker_independent(tmp_path: Path) -> None:
    a = generate_dataset(tmp_path / "a", num=6, seed=7, progress=False)
    b = generate_dataset(tmp_path / "b", num=6, seed=7, workers=2, progress=False)
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "manifest.parquet"), pd.read_parquet(b / "manifest.parquet")
    )
    np.testing.assert_array_equal(read_clips(a), read_clips(b))
    # Clip i depends on (seed, i) only: a longer dataset starts with the same clips.
    c = generate_dataset(tmp_path / "c", num=3, seed=7, progress=False)
    np.testing.assert_array_equal(read_clips(c), read_clips(a)[:3])
    d = generate_dataset(tmp_path / "d", num=3, seed=8, progress=False)
    assert not np.array_equal(read_clips(d), read_clips(c))


def test_generate_dataset_resumes(tmp_path: Path) -> None:
    out = generate_dataset(tmp_path, num=4, seed=1, progress=False)
    clips = sorted((out / "clips").glob("*.mp4"))
    first = read_clips(out)
    (clips[1]).unlink()
    clips[2].write_bytes(b"not a video")  # e.g. a file another tool truncated
    os.utime(clips[0], (1, 1))  # mark: a skipped clip keeps its mtime
    generate_dataset(out, num=4, seed=1, progress=False)
    assert clips[0].stat().st_mtime == 1
    np.testing.assert_array_equal(read_clips(out), first)
    assert not list((out / "clips").glob(".*"))  # no temp files left behind


def test_eval_prompts() -> None:
    held = eval_prompts("heldout")
    assert {(c, s, d) for c, s, d, _ in held} == HELD_OUT and len(held) == 8
    train = eval_prompts("train")
    triples = [(c, s, d) for c, s, d, _ in train]
    assert len(set(triples)) == 24 and not set(triples) & HELD_OUT
    assert {t[0] for t in triples} == set(COLORS)
    assert {t[1] for t in triples} == set(SHAPES) and {t[2] for t in triples} == set(DIRECTIONS)
    assert all(p == canonical_caption(c, s, d) for c, s, d, p in held + train)
    assert train == eval_prompts("train")
    assert held[0][3] == "a red triangle moving up"


def test_captions_vary() -> None:
    assert len(TEMPLATES) >= 10
    rng = np.random.default_rng(0)
    texts = {caption("red", "circle", "left", rng) for _ in range(400)}
    assert len(texts) >= 30
    assert "A red ball slides to the left." in texts or "A red circle slides to the left." in texts


def test_parse_prompt_round_trips_every_template_and_composition() -> None:
    for (color, shape, direction), template in itertools.product(ALL_COMPOSITIONS, TEMPLATES):
        for s_word, d_word in itertools.product(SHAPE_WORDS[shape], DIRECTION_WORDS[direction]):
            text = template.format(c=color, s=s_word, d=d_word)
            assert parse_prompt(text) == (color, shape, direction), text
        assert parse_prompt(canonical_caption(color, shape, direction)) == (color, shape, direction)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A BLUE ball falling", ("blue", "circle", "down")),
        ("teal disk rises slowly", ("cyan", "circle", "up")),
        ("a violet box going from left to right", ("purple", "square", "right")),
        ("an orange triangle moving from the top to the bottom", ("orange", "triangle", "down")),
        ("a red ball on a white background heading west", ("red", "circle", None)),
        ("something moves", (None, None, None)),
        ("reddish shapes", (None, None, None)),
    ],
)
def test_parse_prompt_free_text(text: str, expected: tuple) -> None:
    assert parse_prompt(text) == expected


def test_clip_rng_is_order_independent() -> None:
    a = sample_spec(clip_rng(5, 10), "train")
    _ = [sample_spec(clip_rng(5, i), "train") for i in range(10)]
    assert sample_spec(clip_rng(5, 10), "train") == a
