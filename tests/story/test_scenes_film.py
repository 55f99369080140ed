"""Films of the scenes world: the grader's verdict on shots, redraws, the storyboard, a whole run."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil

import cv2
import numpy as np
import pytest
import yaml

from nanosora.shapes import scenes
from nanosora.shapes.grammar import CATEGORIES, Composition, parse
from nanosora.story import RenderConfig, StoryConfig, main
from nanosora.story.animation import resolve_mode
from nanosora.story.cast import plan_shots, write_script
from nanosora.story.montage import MontageConfig
from nanosora.story.pipeline import shot_views
from nanosora.story.render import REROLL_STRIDE, Job, _draw_takes, verdict
from nanosora.story.schema import Shot, ShotList
from nanosora.story.state import RunState
from nanosora.story.storyboard import write_html, write_sheet
from nanosora.video.io import write_video

# One premise per category; each one's first shot is graded below.
PREMISES = {
    "single": "A red ball crosses the world",
    "attributes": "A lonely red ball crosses the dark world to find its friends",
    "numeracy": "The ball counts three stars",
    "spatial": "The green triangle waits to the left of its friend",
    "motion": "A red ball chases a blue square",
    "dynamic": "The white box changes colour",
    "actions": "The ball bounces off the left wall",
    "interactions": "The red ball hides behind a green box",
}


def planned(category: str) -> tuple[str, Composition]:
    """The prompt and composition of the shot of the premise's `category`."""
    shots = plan_shots(write_script(PREMISES[category]), 6).shots
    prompt = next(s.prompt for s in shots if parse(s.prompt)[0].category == category)
    return prompt, parse(prompt)[0]


def truth(comp: Composition, seed: int = 0) -> np.ndarray:
    """A ground-truth clip `(17, 64, 64, 3)` of `comp`, drawn with a fixed rng."""
    objects, events = scenes.realise(np.random.default_rng(seed), comp)
    return scenes.render(scenes.Scene(comp, "", "train", objects, events))


def near_miss(comp: Composition) -> np.ndarray:
    """A ground-truth clip of the first composition that differs from `comp` in one thing."""
    return truth(scenes.near_misses(comp)[0])


def test_the_premises_cover_every_category():
    assert set(PREMISES) == set(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_verdict_passes_the_truth_and_fails_a_near_miss(category):
    prompt, comp = planned(category)
    score, seen = verdict(truth(comp), prompt, "scenes", 17)
    assert score == 3 and seen  # a pass is a full match; the reading is what the grader saw
    score, reason = verdict(near_miss(comp), prompt, "scenes", 17)
    assert score == 0 and reason  # a fail, with the grader's reason
    # A keyframe is graded for what a still can show: the first frame of the truth passes,
    # an empty frame does not.
    assert verdict(truth(comp)[0], prompt, "scenes", 17)[0] == 3
    empty = verdict(np.zeros((64, 64, 3), np.uint8), prompt, "scenes", 17)
    assert empty[0] == 0 and empty[1]


def test_verdict_outside_the_grammar_and_other_vocabularies():
    frames = truth(planned("motion")[1])
    assert verdict(frames, "a sad robot walks", "scenes", 17) == (
        -1,
        "prompt outside the scenes grammar",
    )
    assert verdict(frames, planned("motion")[0], "", 17) == (-1, "")


def test_auto_animation_is_text_to_video_for_scenes():
    assert resolve_mode("auto", 17, "scenes") == "t2v"
    assert resolve_mode("auto", 17, "shapes") == "i2v"
    assert resolve_mode("i2v", 17, "scenes") == "i2v"  # asked for explicitly


def test_redraw_stops_at_the_pass_and_records_the_tries():
    prompt, comp = planned("interactions")
    job = Job(Shot(id="s01", description="d", prompt=prompt), seed=5, inputs="x")
    calls: list[dict[str, int]] = []

    def draw(jobs: list[Job], seeds: dict[str, int]) -> list[np.ndarray]:
        calls.append(seeds)
        return [near_miss(comp) if len(calls) == 1 else truth(comp)]

    check = functools.partial(verdict, vocabulary="scenes", clip_frames=17)
    best, errors = _draw_takes([job], draw, rerolls=3, batch_size=4, check=check)
    take = best["s01"]
    assert not errors and len(calls) == 2  # the pass ended the redraws
    assert take.score == 3 and take.tries == 2 and take.seed == 5 + REROLL_STRIDE
    assert calls == [{"s01": 5}, {"s01": 5 + REROLL_STRIDE}]


def test_redraws_are_bounded_and_keep_the_reason():
    prompt, comp = planned("dynamic")
    job = Job(Shot(id="s01", description="d", prompt=prompt), seed=5, inputs="x")
    draws = []

    def draw(jobs: list[Job], seeds: dict[str, int]) -> list[np.ndarray]:
        draws.append(seeds["s01"])
        return [near_miss(comp)]

    check = functools.partial(verdict, vocabulary="scenes", clip_frames=17)
    take = _draw_takes([job], draw, rerolls=2, batch_size=4, check=check)[0]["s01"]
    assert len(draws) == 3 and take.tries == 3 and take.score == 0
    assert take.seed == 5 and take.reading == verdict(near_miss(comp), prompt, "scenes", 17)[1]


def test_storyboard_shows_each_verdict(tmp_path):
    prompt, comp = planned("motion")
    shots = ShotList(shots=[Shot(id=i, description="d", prompt=prompt) for i in ("s01", "s02")])
    work = tmp_path / "film.story"
    state = RunState(work / "state.json")
    for sid, frames in (("s01", truth(comp)), ("s02", near_miss(comp))):
        path = write_video(work / "clips" / f"{sid}.mp4", frames, fps=8)
        score, reading = verdict(frames, prompt, "scenes", 17)
        state.wrote(sid, "clip", path, "x", seed=1, tries=1, probe=reading, matched=score,
                    passed=score == 3)  # fmt: skip
    views = shot_views(shots, work, state)
    assert [v.verdict for v in views] == ["passed", "failed"]
    reason = views[1].probe
    assert reason and reason != views[0].probe
    script = write_script(PREMISES["motion"])
    page = write_html(tmp_path / "film.storyboard.html", script, shots, views).read_text()
    assert '<b class="passed">passed</b>' in page and '<b class="failed">failed</b>' in page
    assert reason.replace("'", "&#x27;") in page and "<th>verdict</th>" in page
    sheet = write_sheet(tmp_path / "film.storyboard.png", shots.shots, views)
    plain = [dataclasses.replace(v, verdict="") for v in views]  # as for the shapes model
    plain_sheet = write_sheet(tmp_path / "plain.png", shots.shots, plain)
    with_lines, without = cv2.imread(str(sheet)), cv2.imread(str(plain_sheet))
    assert with_lines.shape[0] > without.shape[0] and with_lines.shape[1] == without.shape[1]
    # the verdict lines are drawn in green (passed) and red (failed): RGB -> BGR in the file
    rgb = with_lines[..., ::-1].reshape(-1, 3).astype(int)
    assert ((rgb[:, 1] > 150) & (rgb[:, 0] < 150)).any() and (
        (rgb[:, 0] > 150) & (rgb[:, 1] < 150)
    ).any()
    # A shapes model's clip (no verdict recorded) keeps the probe column as it was.
    state.data["shots"]["s01"]["clip"].pop("passed")
    assert shot_views(shots, work, state)[0].verdict == ""
    shapes_page = write_html(tmp_path / "p.html", script, shots, shot_views(shots, work, state))
    assert "<th>verdict</th>" in shapes_page.read_text()  # s02 still has its verdict
    state.data["shots"]["s02"]["clip"].pop("passed")
    shapes_page = write_html(tmp_path / "p.html", script, shots, shot_views(shots, work, state))
    assert (
        "<th>probe</th>" in shapes_page.read_text()
        and 'class="failed"' not in shapes_page.read_text()
    )


@pytest.fixture(scope="module")
def scenes_model(tiny_model, tmp_path_factory):
    """The tiny random pipeline, declared a model of the scenes world."""
    path = tmp_path_factory.mktemp("scenes-model") / "model"
    shutil.copytree(tiny_model, path)
    cfg = yaml.safe_load((path / "pipeline.yaml").read_text())
    (path / "pipeline.yaml").write_text(yaml.safe_dump(cfg | {"vocabulary": "scenes"}))
    return path


def test_a_scenes_film_is_graded_redrawn_and_judged_on_the_storyboard(tmp_path, scenes_model):
    cfg = StoryConfig(
        premise=PREMISES["attributes"], num_shots=2, out=str(tmp_path / "film.mp4"),
        stop_after="clips", render=RenderConfig(model=str(scenes_model), rerolls=1),
        montage=MontageConfig(width=64, height=64, fps=8, title_seconds=0, end_seconds=0),
    )  # fmt: skip
    main(cfg)
    work = tmp_path / "film.story"
    shots = json.loads((work / "shots.json").read_text())["shots"]
    assert [parse(s["prompt"])[0].category for s in shots] == ["single", "attributes"]
    state = json.loads((work / "state.json").read_text())
    assert state["animate"] == "t2v"  # auto, for a scenes model
    for s in shots:
        clip = state["shots"][s["id"]]["clip"]
        # a random model draws noise: the grader fails it, so a second seed was drawn
        assert clip["passed"] is False and clip["matched"] == 0 and clip["tries"] == 2
        assert clip["probe"]  # the grader's reason
        assert state["shots"][s["id"]]["keyframe"]["passed"] is False
    page = (tmp_path / "film.storyboard.html").read_text()
    assert page.count('<b class="failed">failed</b>') == 2
    main(dataclasses.replace(cfg, resume=True))  # nothing changed: nothing is redrawn
    assert json.loads((work / "state.json").read_text())["shots"] == state["shots"]
