"""Animation: image-to-video from each shot's keyframe (the default) or text-to-video (--animate t2v)."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from nanosora.story import RenderConfig, StoryConfig, StoryError, main
from nanosora.story.animation import resolve_mode
from nanosora.story.keyframes import write_image
from nanosora.story.montage import MontageConfig
from nanosora.story.render import room_ahead, verdict
from nanosora.video.io import read_video

FAST = MontageConfig(width=64, height=64, fps=8, title_seconds=0, end_seconds=0)


@pytest.fixture
def cfg(tmp_path, tiny_model) -> StoryConfig:
    return StoryConfig(premise="A red ball falls, then a blue square flees left.", num_shots=2,
                       out=str(tmp_path / "film.mp4"), stop_after="clips",
                       render=RenderConfig(model=str(tiny_model), rerolls=0), montage=FAST)  # fmt: skip


def round_trip(tiny_model, image: np.ndarray) -> np.ndarray:
    """What the tiny pipeline's causal VAE makes of `image` as a first frame (H, W, 3) uint8."""
    from nanosora.generate import Pipeline

    vae = Pipeline.load(tiny_model).vae
    x = torch.from_numpy(image).float().div(127.5).sub(1).permute(2, 0, 1)[None, :, None]
    with torch.no_grad():
        y = vae.decode(vae.encode(x)).clamp(-1, 1)
    return ((y[0, :, 0].permute(1, 2, 0) + 1) * 127.5).round().to(torch.uint8).numpy()


def luma_error(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute luma difference: an mp4 (4:2:0) keeps luma at full resolution, not chroma,
    and the tiny random VAE draws pixel noise that H.264 cannot keep in colour."""
    weights = np.array([0.299, 0.587, 0.114])
    return float(np.abs(a.astype(float) @ weights - b.astype(float) @ weights).mean())


def test_mode_resolution():
    assert resolve_mode("auto", 17) == "i2v" and resolve_mode("t2v", 17) == "t2v"
    assert resolve_mode("auto", 1) == "t2v"  # a one-frame clip is its keyframe: nothing to animate
    with pytest.raises(StoryError, match="--animate i2v needs clips of 5 or more frames.*t2v"):
        resolve_mode("i2v", 1)
    with pytest.raises(StoryError, match="--animate must be one of auto, i2v, t2v, not 'v2v'"):
        RenderConfig(animate="v2v")  # type: ignore[arg-type]


def test_user_keyframe_drives_its_clip(cfg, tmp_path, tiny_model, capsys):
    """The clip's first frame is the user's image (resized, alpha dropped, with notices): with a
    causal VAE it is decoded from the keyframe's latent alone, so it equals the VAE round trip."""
    mine = np.zeros((96, 80, 4), np.uint8)  # another size, with an alpha channel
    mine[20:50, 10:40] = (0, 255, 0, 255)
    folder = tmp_path / "mine"
    folder.mkdir()
    cv2.imwrite(str(folder / "s02.png"), cv2.cvtColor(mine, cv2.COLOR_RGBA2BGRA))
    main(dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, keyframes=str(folder))))
    out = capsys.readouterr().out
    assert "animation: image-to-video" in out
    assert "notice: shot 's02' keyframe" in out and "alpha channel; dropped" in out
    assert "is 80x96; resized to 64x64" in out
    work = tmp_path / "film.story"
    state = json.loads((work / "state.json").read_text())
    assert state["animate"] == "i2v" and state["shots"]["s02"]["keyframe"]["source"].endswith(
        "s02.png"
    )
    first = read_video(work / "clips" / "s02.mp4")[0]
    resized = cv2.resize(mine[..., :3], (64, 64), interpolation=cv2.INTER_AREA)
    assert luma_error(first, round_trip(tiny_model, resized)) < 3.0  # equal up to H.264

    # Swap the keyframe: on --resume only its shot is re-animated, from the new picture.
    other = np.zeros((64, 64, 3), np.uint8)
    other[40:60, 30:50] = (255, 255, 0)
    write_image(folder / "s02.png", other)
    s01 = (work / "clips" / "s01.mp4").stat().st_mtime_ns
    main(dataclasses.replace(cfg, resume=True,
                             render=dataclasses.replace(cfg.render, keyframes=str(folder))))  # fmt: skip
    assert (work / "clips" / "s01.mp4").stat().st_mtime_ns == s01
    first = read_video(work / "clips" / "s02.mp4")[0]
    assert luma_error(first, round_trip(tiny_model, other)) < 3.0
    assert luma_error(first, round_trip(tiny_model, resized)) > 10.0


def test_text_to_video_ignores_the_keyframe(cfg, tmp_path, capsys):
    t2v = dataclasses.replace(cfg, render=dataclasses.replace(cfg.render, animate="t2v"))
    main(t2v)
    assert "animation: text-to-video" in capsys.readouterr().out
    work = tmp_path / "film.story"
    assert json.loads((work / "state.json").read_text())["animate"] == "t2v"
    clips = {p.name: p.stat().st_mtime_ns for p in (work / "clips").iterdir()}
    write_image(work / "keyframes" / "s01.png", np.zeros((64, 64, 3), np.uint8))
    main(dataclasses.replace(t2v, resume=True))  # a swapped keyframe does not change a t2v clip
    assert {p.name: p.stat().st_mtime_ns for p in (work / "clips").iterdir()} == clips
    main(dataclasses.replace(cfg, resume=True))  # switching to i2v re-animates every shot
    assert all(p.stat().st_mtime_ns != clips[p.name] for p in (work / "clips").iterdir())


def test_non_image_keyframe_in_the_work_folder_fails_its_clip_alone(cfg, tmp_path):
    work = tmp_path / "film.story"
    main(dataclasses.replace(cfg, stop_after="keyframes"))
    good = (work / "keyframes" / "s02.png").read_bytes()
    (work / "keyframes" / "s02.png").write_text("not an image")  # a bad swap by hand
    with pytest.raises(StoryError) as e:
        main(dataclasses.replace(cfg, resume=True))
    assert "shot 2 ('s02') clip: shot 's02': keyframe" in str(e.value)
    assert "is not a readable image" in str(e.value) and "--resume" in str(e.value)
    assert [p.name for p in (work / "clips").iterdir()] == ["s01.mp4"]  # the other shot is done
    s01 = (work / "clips" / "s01.mp4").stat().st_mtime_ns
    (work / "keyframes" / "s02.png").write_bytes(good)
    main(dataclasses.replace(cfg, resume=True))
    assert sorted(p.name for p in (work / "clips").iterdir()) == ["s01.mp4", "s02.mp4"]
    assert (work / "clips" / "s01.mp4").stat().st_mtime_ns == s01


def test_keyframe_check_needs_room_to_move():
    """A keyframe passes when its object has the colour and shape and room for the motion."""
    still = np.zeros((64, 64, 3), np.uint8)
    still[4:20, 40:56] = (255, 0, 0)  # a red square near the top right corner
    assert room_ahead(still, "up") == 4 and room_ahead(still, "left") == 40
    assert room_ahead(np.zeros((64, 64, 3), np.uint8), "up") == 0
    assert verdict(still, "a red square moving left", "shapes", 17) == (
        3,
        "red square, 40 px free left",
    )
    assert verdict(still, "a red square moving up", "shapes", 17)[0] == 2  # 4 px < 16 px needed
    assert verdict(still, "a red square moving up", "", 17) == (-1, "")
