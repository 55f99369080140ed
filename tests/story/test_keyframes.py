"""Keyframes: single-frame generation and user images (folder or shot list), with clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from nanosora.story.keyframes import find_user_keyframe, generate_keyframes, read_image, write_image
from nanosora.story.schema import Shot, StoryError


def test_model_keyframes_are_single_frames(tiny_model):
    from nanosora.generate import Pipeline

    pipe = Pipeline.load(tiny_model)
    stills = generate_keyframes(
        pipe, ["a red circle moving left", "a blue square moving up"], [0, 1]
    )
    assert [s.shape for s in stills] == [(64, 64, 3), (64, 64, 3)] and stills[0].dtype == np.uint8
    again = generate_keyframes(pipe, ["a blue square moving up"], [1])  # batch-independent
    assert np.abs(again[0].astype(int) - stills[1]).max() <= 1


def test_user_keyframes_from_field_and_folder(tmp_path):
    img = np.zeros((30, 40, 3), np.uint8)
    img[5:10, 5:10] = (255, 0, 0)
    write_image(tmp_path / "frames" / "s02.png", img)
    write_image(tmp_path / "mine.png", img)
    a = Shot(id="s01", description="d", prompt="p", keyframe="mine.png")
    b = Shot(id="s02", description="d", prompt="p")
    c = Shot(id="s03", description="d", prompt="p")
    assert find_user_keyframe(a, tmp_path / "frames", tmp_path) == tmp_path / "mine.png"
    assert find_user_keyframe(b, tmp_path / "frames", tmp_path) == tmp_path / "frames" / "s02.png"
    assert find_user_keyframe(c, tmp_path / "frames", tmp_path) is None
    assert (read_image(tmp_path / "mine.png", "s01")[7, 7] == (255, 0, 0)).all()  # RGB, not BGR


def test_not_an_image_names_the_shot(tmp_path):
    (tmp_path / "s04.png").write_text("this is text")
    with pytest.raises(StoryError, match=r"shot 's04': keyframe .*s04.png is not a readable image"):
        read_image(tmp_path / "s04.png", "s04")
    missing = Shot(id="s05", description="d", prompt="p", keyframe="nope.png")
    with pytest.raises(StoryError, match=r"shot 's05': keyframe .*nope.png does not exist"):
        find_user_keyframe(missing, None, tmp_path)
