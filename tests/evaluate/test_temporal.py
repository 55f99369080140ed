"""Temporal metrics on shapes-world clips with known defects."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nanosora.evaluate.temporal import (
    flicker,
    motion_smoothness,
    object_persistence,
    temporal_metrics,
)
from nanosora.shapes.world import clip_rng, render, sample_spec


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return render(sample_spec(clip_rng(0, 1), "all"))


def test_clean_clip_is_smooth_steady_and_persistent(clip):
    m = temporal_metrics(clip)
    assert m["flicker"] < 1e-3  # motion alone keeps the frame mean constant
    assert m["motion_smoothness"] < 5e-3
    assert m["object_persistence"] == 1.0


def test_brightness_pumping_is_flicker(clip):
    pumped = clip.astype(int)
    pumped[::2] += 40
    pumped = np.clip(pumped, 0, 255).astype(np.uint8)
    assert flicker(pumped) > 100 * max(flicker(clip), 1e-4)
    assert flicker(pumped) == pytest.approx(40 / 255, rel=0.05)  # the background shifts by 40


def test_shuffled_frames_are_not_smooth(clip):
    shuffled = clip[np.random.default_rng(0).permutation(len(clip))]
    assert motion_smoothness(shuffled) > 20 * motion_smoothness(clip)
    assert flicker(shuffled) < 1e-3  # still no global flicker: the metrics are separate


def test_vanishing_and_morphing_object_lower_persistence(clip):
    vanish = clip.copy()
    vanish[[4, 9]] = 0
    assert object_persistence(vanish) == pytest.approx(15 / 17)
    spec = sample_spec(clip_rng(0, 1), "all")
    other = "square" if spec.shape != "square" else "triangle"
    morph = clip.copy()
    morph[10:] = render(dataclasses.replace(spec, shape=other))[10:]
    assert object_persistence(morph) <= 10 / 17
    assert object_persistence(np.zeros_like(clip)) == 0.0


def test_rejects_bad_input(clip):
    with pytest.raises(ValueError, match="T >= 3"):
        motion_smoothness(clip[:2])
    with pytest.raises(ValueError, match="uint8"):
        flicker(clip.astype(np.float32))


def test_short_clips_give_nan_not_an_error(clip):
    m = temporal_metrics(clip[:2])
    assert np.isnan(m["motion_smoothness"]) and m["flicker"] < 1e-3
    assert m["object_persistence"] == 1.0
    assert np.isnan(temporal_metrics(clip[:1])["flicker"])
