"""The story pipeline end to end on a tiny random model: outputs, --stop-after, --resume, failures."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from nanosora.story import RenderConfig, StoryConfig, StoryError, main
from nanosora.story.montage import MontageConfig
from nanosora.story.schema import ShotList, load
from nanosora.video.io import probe

PREMISE = "A red ball falls into the dark. Then it rises, and a blue square flees to the left."
FAST = MontageConfig(width=96, height=96, fps=8, title_seconds=0.5, end_seconds=0.5)


@pytest.fixture
def cfg(tmp_path, tiny_model) -> StoryConfig:
    return StoryConfig(premise=PREMISE, out=str(tmp_path / "film.mp4"),
                       render=RenderConfig(model=str(tiny_model), rerolls=0), montage=FAST)  # fmt: skip


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def test_full_run_writes_film_srt_storyboard(cfg, tmp_path):
    film = main(cfg)
    work = tmp_path / "film.story"
    assert film == tmp_path / "film.mp4" and probe(film).codec == "h264"
    shots = load(ShotList, work / "shots.json").shots
    assert len(shots) == 6 and len(list((work / "keyframes").glob("*.png"))) == 6
    assert sorted(p.name for p in (work / "clips").iterdir()) == [f"s0{i}.mp4" for i in range(1, 7)]
    assert "A red ball falls into the dark" in (tmp_path / "film.srt").read_text()
    page = (tmp_path / "film.storyboard.html").read_text()
    assert 'src="film.story/keyframes/s01.png"' in page and 'src="film.mp4"' in page
    assert "a red circle moving down" in page
    assert (tmp_path / "film.storyboard.png").stat().st_size > 1000
    state = json.loads((work / "state.json").read_text())
    assert state["shots"]["s01"]["clip"]["probe"]  # the probe read every clip of the shapes model
    assert "total" in state["timings"]


def test_stop_after_edit_swap_and_resume(cfg, tmp_path):
    work = tmp_path / "film.story"
    assert main(dataclasses.replace(cfg, stop_after="script")) == work / "script.json"
    assert main(dataclasses.replace(cfg, stop_after="shots", resume=True)) == work / "shots.json"
    assert not (work / "keyframes").exists()
    doc = json.loads((work / "shots.json").read_text())
    doc["shots"][1]["prompt"] = "a green triangle moving right"  # a person's edit
    (work / "shots.json").write_text(json.dumps(doc))
    main(dataclasses.replace(cfg, stop_after="keyframes", resume=True))
    assert not (work / "clips").exists() and (tmp_path / "film.storyboard.html").is_file()
    mine = np.zeros((40, 40, 3), np.uint8)  # swap a keyframe for one's own image
    from nanosora.story.keyframes import write_image

    write_image(work / "keyframes" / "s03.png", mine)
    own = (work / "keyframes" / "s03.png").read_bytes()
    main(dataclasses.replace(cfg, stop_after="clips", resume=True))
    assert (work / "keyframes" / "s03.png").read_bytes() == own  # the person's file wins
    assert load(ShotList, work / "shots.json").shots[1].prompt == "a green triangle moving right"
    before = mtimes(work / "clips")
    doc["shots"][3]["prompt"] = "a white square moving up"
    (work / "shots.json").write_text(json.dumps(doc))
    main(dataclasses.replace(cfg, resume=True))
    after = mtimes(work / "clips")
    assert [k for k in before if before[k] != after[k]] == [
        "s04.mp4"
    ]  # only the edited shot redone
    assert (tmp_path / "film.mp4").is_file()


def test_failed_shot_is_kept_apart_and_resume_redoes_only_it(cfg, tmp_path, monkeypatch):
    from nanosora.generate import Pipeline

    real = Pipeline.generate

    def flaky(self, prompts, *args, **kwargs):
        if any("blue" in p for p in prompts) and kwargs.get("num_frames") != 1:
            raise RuntimeError("out of memory (simulated)")
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "generate", flaky)
    with pytest.raises(StoryError) as e:
        main(cfg)
    shots = load(ShotList, tmp_path / "film.story" / "shots.json").shots
    blue = [s.id for s in shots if "blue" in s.prompt]
    assert blue and f"({blue[0]!r}) clip: RuntimeError: out of memory (simulated)" in str(e.value)
    assert "--resume" in str(e.value) and not (tmp_path / "film.mp4").exists()
    clips = tmp_path / "film.story" / "clips"
    done = mtimes(clips)
    assert sorted(done) == sorted(f"{s.id}.mp4" for s in shots if s.id not in blue)
    assert "failed" in (tmp_path / "film.storyboard.html").read_text()

    monkeypatch.setattr(Pipeline, "generate", real)
    main(dataclasses.replace(cfg, resume=True))
    after = mtimes(clips)
    assert all(after[k] == v for k, v in done.items())  # finished shots untouched
    assert sorted(after) == sorted(f"{s.id}.mp4" for s in shots)


def test_keyframe_placed_by_hand_after_a_failure_resumes(cfg, tmp_path, monkeypatch):
    from nanosora.generate import Pipeline
    from nanosora.story.keyframes import write_image

    real = Pipeline.generate

    def no_blue_stills(self, prompts, *args, **kwargs):
        if any("blue" in p for p in prompts) and kwargs.get("num_frames") == 1:
            raise RuntimeError("keyframe failed (simulated)")
        return real(self, prompts, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "generate", no_blue_stills)
    with pytest.raises(StoryError, match="keyframe failed"):
        main(cfg)
    work = tmp_path / "film.story"
    blue = [s.id for s in load(ShotList, work / "shots.json").shots if "blue" in s.prompt]
    assert blue and not (work / "keyframes" / f"{blue[0]}.png").exists()
    monkeypatch.setattr(Pipeline, "generate", real)
    for shot_id in blue:  # a person draws the missing keyframes straight into the work folder
        write_image(work / "keyframes" / f"{shot_id}.png", np.full((64, 64, 3), 30, np.uint8))
    assert main(dataclasses.replace(cfg, resume=True)) == tmp_path / "film.mp4"
    state = json.loads((work / "state.json").read_text())
    assert all(state["shots"][i]["keyframe"]["replaced_by_hand"] for i in blue)
    assert all(not state["shots"][i]["clip"]["error"] for i in blue)


def test_earlier_run_is_not_clobbered(cfg):
    main(dataclasses.replace(cfg, stop_after="script"))
    with pytest.raises(StoryError, match="holds an earlier run: pass --resume.*or --overwrite"):
        main(dataclasses.replace(cfg, stop_after="script"))
    other = dataclasses.replace(
        cfg, premise="a yellow square drops", stop_after="script", overwrite=True
    )
    assert "yellow" in main(other).read_text()


def test_bad_inputs_name_the_shot(cfg, tmp_path):
    with pytest.raises(StoryError, match="premise is empty"):
        main(dataclasses.replace(cfg, premise=" "))
    main(dataclasses.replace(cfg, stop_after="shots", overwrite=True))
    doc = json.loads((tmp_path / "film.story" / "shots.json").read_text())
    doc["shots"][2]["duration"] = 0
    (tmp_path / "film.story" / "shots.json").write_text(json.dumps(doc))
    with pytest.raises(
        StoryError, match=r"shot 3 \('s03'\): duration: Input should be greater than 0"
    ):
        main(dataclasses.replace(cfg, resume=True))
    doc["shots"][2]["duration"] = 2
    doc["shots"][2]["prompt"] = "一个蓝色的方块"
    (tmp_path / "film.story" / "shots.json").write_text(json.dumps(doc))
    with pytest.raises(
        StoryError, match=r"shot 3 \('s03'\): prompt is not in English.*--translate"
    ):
        main(dataclasses.replace(cfg, resume=True))


def test_non_image_keyframe_names_the_shot_and_others_go_on(cfg, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "s02.png").write_text("not an image")
    bad = dataclasses.replace(cfg, stop_after="keyframes",
                              render=dataclasses.replace(cfg.render, keyframes=str(folder)))  # fmt: skip
    with pytest.raises(
        StoryError,
        match=r"shot 2 \('s02'\) keyframe: shot 's02': keyframe .*s02.png is not a readable image",
    ):
        main(bad)
    assert sorted(p.name for p in (tmp_path / "film.story" / "keyframes").iterdir()) == [
        "s01.png", "s03.png", "s04.png", "s05.png", "s06.png"]  # fmt: skip


def test_rerolls_redraw_clips_the_probe_rejects(cfg, tmp_path):
    one = dataclasses.replace(cfg, num_shots=1, stop_after="clips",
                              render=dataclasses.replace(cfg.render, rerolls=1, seed=5))  # fmt: skip
    main(one)
    clip = json.loads((tmp_path / "film.story" / "state.json").read_text())["shots"]["s01"]["clip"]
    # A random model draws noise: the probe rejects it, so a second seed was tried.
    assert clip["matched"] < 3 and clip["tries"] == 2 and clip["seed"] in (5, 5 + 7919)


def test_chat_writer_and_translation_end_to_end(cfg, tmp_path, chat_server, chat_cfg):
    script = {"title": "Fall", "logline": "A red ball falls.",
              "scenes": [{"id": "scene1", "heading": "DARK", "summary": "A red ball falls."}]}  # fmt: skip
    shots = {"title": "Fall", "shots": [
        {"id": "s01", "description": "It falls", "prompt": "a red circle moving down", "subtitle": "下落"},
        {"id": "s02", "description": "It flies", "prompt": "a red circle moving up", "transition": "fade"}]}  # fmt: skip
    chat_server.push(
        ("answer", "```json\n" + json.dumps(script) + "\n```"), ("answer", json.dumps(shots))
    )
    chat = dataclasses.replace(
        cfg, premise="红球落下", writer="chat", num_shots=2, chat=chat_cfg, stop_after="shots"
    )
    planned = load(ShotList, main(chat))
    assert [s.prompt for s in planned.shots] == [
        "a red circle moving down",
        "a red circle moving up",
    ]
    assert chat_server.requests[0]["body"]["messages"][-1]["content"].startswith(
        "Premise: 红球落下"
    )
    # Offline planner with a translated premise.
    chat_server.push(("answer", '{"premise": "a red ball falls, then a cyan box rises"}'))
    offline = dataclasses.replace(
        chat, writer="offline", translate=True, overwrite=True, num_shots=2
    )
    prompts = [s.prompt for s in load(ShotList, main(offline)).shots]
    assert prompts == ["a red circle moving down", "a cyan square moving up"]
