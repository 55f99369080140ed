"""The studio without a browser: grading, uploads, the output folder, and every job."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nanosora.config import DiTConfig, PipelineConfig, TextEncoderConfig, VAEConfig
from nanosora.models.dit import VideoDiT
from nanosora.models.text_encoder import load_text_encoder
from nanosora.models.vae import VideoVAE
from nanosora.pipeline import Pipeline
from nanosora.shapes import scenes, world
from nanosora.shapes.probe import probe_video
from nanosora.studio.engine import (
    SHIPPED,
    Settings,
    Studio,
    StudioError,
    edit_shots,
    model_names,
    parse_steps,
)
from nanosora.studio.grade import grade_clip
from nanosora.studio.store import Store
from nanosora.studio.uploads import read_upload
from nanosora.video.io import read_video, write_video

RED_LEFT = "a red circle moving left"


def truth(color: str, shape: str, direction: str) -> np.ndarray:
    """A ground-truth shapes-world clip of one composition: 16 px, 2 px a frame, inside."""
    start = {"left": (44, 24), "right": (4, 24), "up": (24, 44), "down": (24, 4)}[direction]
    return world.render(world.ClipSpec(color, shape, direction, 16, 2.0, *start, ""))


# ---- grading ----------------------------------------------------------------------------------


def test_one_object_prompts_are_graded_by_the_probe():
    clip = truth("red", "circle", "left")
    ok = grade_clip(clip, RED_LEFT)
    assert (ok.matches, ok.grader, ok.seen) == (True, "probe", "red circle moving left")
    assert ok.verdict == "matches the prompt"
    # free text the scenes grammar does not know, but that names all three attributes
    assert grade_clip(clip, "the red ball slides to the left, fast").matches is True
    wrong = grade_clip(clip, "a blue square moving left")
    assert wrong.matches is False and "colour red, expected blue" in wrong.reason
    assert "shape circle, expected square" in wrong.verdict


def test_scenes_prompts_are_graded_by_the_scenes_grader():
    scene = scenes.sample_scene(np.random.default_rng(0), "spatial")
    frames = scenes.render(scene)
    g = grade_clip(frames, scene.caption)
    assert (g.matches, g.grader) == (True, "scenes grader"), g
    # the same clip against a prompt naming another object fails, saying what is missing
    other = "a white triangle is to the left of a cyan square"
    bad = grade_clip(frames, other)
    assert bad.matches is False and bad.reason


def test_prompts_nothing_can_check_and_stills():
    clip = truth("green", "square", "up")
    g = grade_clip(clip, "a beautiful sunset over the sea")
    assert g.matches is None and g.seen == "green square moving up"
    assert g.verdict.startswith("not checked")
    still = grade_clip(clip[:1], "a green square moving up")  # one frame: colour and shape only
    assert still.matches is True and still.seen == "green square"
    assert grade_clip(clip[:1], "a red square moving up").matches is False


# ---- uploads and the folder -------------------------------------------------------------------


def test_uploads_are_bounded_typed_and_decoded(tmp_path):
    img = np.zeros((120, 90, 3), np.uint8)
    cv2.circle(img, (45, 60), 20, (0, 0, 255), -1)  # BGR red
    good = tmp_path / "u1"
    cv2.imwrite(str(good.with_suffix(".png")), img)
    good = good.with_suffix(".png")
    up = read_upload(good, "my photo.png", 10**6, 64, 64, 8.0)
    assert up.kind == "image" and up.frames.shape == (1, 64, 64, 3) and len(up.digest) == 16
    assert up.frames[0, 32, 32, 0] > 200  # red, as RGB
    with pytest.raises(
        StudioError, match=r"'my photo.png' is 0.0 MB; the studio takes uploads up to"
    ):
        read_upload(good, "my photo.png", 100, 64, 64, 8.0)
    with pytest.raises(StudioError, match="not a type the studio takes"):
        read_upload(good, "notes.txt", 10**6, 64, 64, 8.0)
    corrupt = tmp_path / "c.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(StudioError, match="'broken.png' is not a readable image"):
        read_upload(corrupt, "broken.png", 10**6, 64, 64, 8.0)
    # a small file that would decode to a huge picture is refused from its header
    huge = tmp_path / "h.png"
    cv2.imwrite(str(huge), np.zeros((8, 5000, 3), np.uint8))
    with pytest.raises(StudioError, match="5000x8; the studio takes up to 4096 px"):
        read_upload(huge, "wide.png", 10**6, 64, 64, 8.0)
    # clips: decoded at the model's rate; a corrupt one refused; a user's path is only a name
    clip = write_video(tmp_path / "clip.mp4", truth("red", "circle", "left"), fps=8.0)
    up = read_upload(clip, "../../etc/passwd.mp4", 10**6, 64, 64, 8.0)
    assert up.kind == "clip" and up.frames.shape == (17, 64, 64, 3)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(StudioError, match="'bad.mp4' is not a readable video"):
        read_upload(bad, "bad.mp4", 10**6, 64, 64, 8.0)


def test_the_store_never_leaves_its_folder(tmp_path):
    store = Store(tmp_path / "out")
    rid = store.new_id()
    assert store.folder("results", rid).parent == store.root / "results"
    for bad in ("../x", "20250101-000000-abcdef/../../x", ""):
        with pytest.raises(StudioError):
            store.folder("results", bad)
    with pytest.raises(StudioError, match="outside"):
        store.inside("../secret.txt")
    with pytest.raises(StudioError):
        store.load_upload("../../etc/passwd")
    store.add({"id": rid, "kind": "generate", "settings": {}, "files": {"mp4": "results/x.mp4"}})
    store.gallery.open("a").write(
        "not json\n" + json.dumps({"id": store.new_id(), "files": {"mp4": "../../etc/passwd"}})
        + "\n"
    )  # fmt: skip
    assert [e["id"] for e in store.entries()] == [rid]  # a hand-edited line is skipped


def test_settings_are_bounded_with_clear_messages(studio):
    ok, warnings = studio.check(Settings(RED_LEFT, seed=3.0, steps=10.0))
    assert (ok.seed, ok.steps, warnings) == (3, 10, [])
    bad = {
        "steps must be between 1 and 100, not 500": Settings(RED_LEFT, steps=500),
        "frames must be 4k\\+1": Settings(RED_LEFT, num_frames=6),
        "frames must be between 1 and 33": Settings(RED_LEFT, num_frames=65),
        "guidance must be between 0 and 20": Settings(RED_LEFT, cfg_scale=50),
        "eta must be between 0 and 1": Settings(RED_LEFT, eta=2),
        "seed must be a whole number": Settings(RED_LEFT, seed=1.5),
        "prompt has 501 characters": Settings("a" * 501),
        "prompt is empty": Settings("  "),
        "unknown model 'nope'": Settings(RED_LEFT, model="nope"),
    }
    for message, s in bad.items():
        with pytest.raises(StudioError, match=message):
            studio.check(s)
    _, warnings = studio.check(Settings("a red circle"))
    assert warnings and "names no direction" in warnings[0]
    # The shipped model's few-step transformer ignores guidance and eta: the user is told.
    _, warnings = studio.check(Settings(RED_LEFT, steps=4))
    assert len(warnings) == 1 and "guidance and eta do not apply" in warnings[0]
    assert studio.check(Settings(RED_LEFT, steps=4, num_frames=1))[1] == []
    assert parse_steps("", 25) == [4, 8, 12, 17, 21, 25]
    with pytest.raises(StudioError, match="between 1 and 25"):
        parse_steps("0, 30", 25)


# ---- jobs with the shipped model --------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A small untrained pipeline: a second model to compare with."""
    torch.manual_seed(0)
    vae = VideoVAE(VAEConfig(base_channels=8, channel_mult=(1, 2, 2), latent_channels=4))
    dit = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2))
    pipe = Pipeline(vae, dit, load_text_encoder(TextEncoderConfig()), PipelineConfig(steps=3))
    return pipe.save(tmp_path_factory.mktemp("models") / "tiny", dtype=torch.float32)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, tiny) -> Studio:
    return Studio(tmp_path_factory.mktemp("studio") / "out", model_names([tiny]))


def files_of(studio: Studio, result) -> dict[str, Path]:
    paths = {k: studio.store.inside(v) for k, v in result.files.items()}
    assert all(p.is_file() and p.is_relative_to(studio.store.root) for p in paths.values())
    return paths


@pytest.mark.shipped_model
def test_generate_writes_graded_files_and_reruns_the_same(studio):
    steps_seen = []
    r = studio.generate(Settings(RED_LEFT, seed=0), watch=lambda i, n: steps_seen.append((i, n)))
    assert steps_seen == [(i, 25) for i in range(1, 26)]
    files = files_of(studio, r)
    assert set(files) == {"mp4", "gif"}
    assert r.grades[0].matches is True
    p = probe_video(files["mp4"])
    assert (p.color, p.shape, p.direction) == ("red", "circle", "left")
    assert len(read_video(files["gif"])) == 17
    entry = studio.store.entry(r.id)
    assert entry["settings"]["prompt"] == RED_LEFT and entry["kind"] == "generate"
    again = studio.rerun(r.id)
    assert again.id != r.id
    # the same frames again: the GIF encoder is deterministic (libx264's mp4 bytes are not)
    assert files["gif"].read_bytes() == files_of(studio, again)["gif"].read_bytes()


@pytest.mark.shipped_model
def test_a_watch_that_raises_stops_the_job_and_records_nothing(studio):
    class Gone(Exception):
        pass

    def watch(i, n):
        if i == 3:
            raise Gone()

    before = len(studio.store.entries())
    with pytest.raises(Gone):
        studio.generate(Settings("a blue square moving up", steps=20), watch=watch)
    assert len(studio.store.entries()) == before


@pytest.mark.shipped_model
def test_compare_seeds_and_models(studio, tiny):
    r = studio.compare(Settings("a yellow triangle moving right", seed=5, steps=10), count=3)
    files = files_of(studio, r)
    assert [c["label"] for c in r.clips] == ["seed 5", "seed 6", "seed 7"]
    grid = read_video(files["grid"])
    assert grid.shape[0] == 17 and grid.shape[2] > 3 * 128  # three 2x cells side by side
    assert cv2.imread(str(files["sheet"])).shape[0] > 3 * 128
    m = studio.compare(Settings(RED_LEFT, steps=6), other="tiny")
    assert [c["label"] for c in m.clips] == [SHIPPED, "tiny"]
    assert m.grades[0].matches is True and m.grades[1].matches is not True  # untrained: noise
    with pytest.raises(StudioError, match="between 2 and 8"):
        studio.compare(Settings(RED_LEFT), count=20)


@pytest.mark.shipped_model
def test_denoise_strip_shows_the_chosen_steps(studio):
    r = studio.denoise(Settings(RED_LEFT, steps=12), "1, 6, 12")
    files = files_of(studio, r)
    assert r.settings["show"] == [1, 6, 12]
    strip = cv2.imread(str(files["strip"]))
    row = 16 + 128 + 2  # label, 2x cell, gap (video.io.contact_sheet)
    assert strip.shape[0] == 3 * row + 2
    # step 12's estimate is the clip itself; step 1's, from pure noise, is not
    last = strip[2 * row + 2 + 16 : 2 * row + 2 + 16 + 128, 2:130].astype(int)
    first = strip[2 + 16 : 2 + 16 + 128, 2:130].astype(int)
    frame0 = cv2.resize(read_video(files["mp4"])[0][..., ::-1], (128, 128),
                        interpolation=cv2.INTER_NEAREST).astype(int)  # fmt: skip
    assert np.abs(last - frame0).mean() < np.abs(first - frame0).mean()


@pytest.mark.shipped_model
def test_animate_an_upload_and_extend_a_clip(studio, tmp_path):
    first = truth("blue", "circle", "left")[0]
    png = tmp_path / "first.png"
    cv2.imwrite(str(png), first[..., ::-1])
    up = studio.read_upload(png, "first.png")
    r = studio.generate(Settings("a blue circle moving left"), image=up.digest)
    frames = read_video(files_of(studio, r)["mp4"])
    assert r.kind == "animate" and np.abs(frames[0].astype(int) - first).mean() < 8
    clip = write_video(tmp_path / "c.mp4", truth("red", "circle", "right")[:9], fps=8.0)
    up = studio.read_upload(clip, "c.mp4")
    seen = []
    r = studio.generate(Settings("a red circle moving right", steps=5), watch=lambda i, n: seen.append(n),
                        clip=up.digest, extend=8)  # fmt: skip
    frames = read_video(files_of(studio, r)["mp4"])
    assert r.kind == "extend" and len(frames) == 9 + 8 and set(seen) == {None}
    with pytest.raises(StudioError, match="frames to add must be between 1 and 32"):
        studio.generate(Settings(RED_LEFT), clip=up.digest, extend=100)
    again = studio.rerun(r.id)  # the upload is kept in the folder: a re-run needs nothing else
    assert again.kind == "extend"


@pytest.mark.shipped_model
def test_story_shots_film_edits_and_one_shot_redrawn(studio):
    rid, shots = studio.story_shots("A red ball falls. Then it rises again.", shots=2)
    assert [s.prompt for s in shots.shots] == ["a red circle moving down", "a red circle moving up"]
    rows = [[s.id, s.prompt, s.duration, i] for i, s in enumerate(shots.shots)]
    r = studio.story_film(rid, rows)
    files = files_of(studio, r)
    assert set(files) == {"film", "storyboard", "shots"}
    assert [g.matches for g in r.grades] == [True, True]
    clips = studio.store.root / "stories" / rid / "film.story" / "clips"
    before = {p.name: p.read_bytes() for p in clips.iterdir()}
    rows[1][1] = "a green square moving up"  # an edited prompt redraws its shot only
    r = studio.story_film(rid, rows)
    after = {p.name: p.read_bytes() for p in clips.iterdir()}
    assert after["s01.mp4"] == before["s01.mp4"] and after["s02.mp4"] != before["s02.mp4"]
    assert r.clips[1]["label"].endswith("a green square moving up")
    r = studio.story_film(rid, None, redraw="s01")  # a new seed for s01 alone
    final = {p.name: p.read_bytes() for p in clips.iterdir()}
    assert final["s01.mp4"] != after["s01.mp4"] and final["s02.mp4"] == after["s02.mp4"]
    with pytest.raises(StudioError, match="shot 1: the shot column must stay 's01'"):
        edit_shots(shots, [["zz", "a red circle moving down", 2, 0], rows[1]])
    with pytest.raises(StudioError, match="duration"):
        edit_shots(shots, [["s01", "a red circle moving down", -1, 0], rows[1]])
