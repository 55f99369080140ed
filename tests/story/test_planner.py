"""The offline planner: deterministic shots, within the shapes vocabulary, from the premise's words."""

from __future__ import annotations

import pytest

from nanosora.shapes.captions import parse_prompt
from nanosora.shapes.world import HELD_OUT
from nanosora.story.planner import plan_shots, split_beats, write_script
from nanosora.story.schema import StoryError

PREMISE = "A red ball falls into the dark. Then it rises again, and a blue square flees to the left. Finally the ball rests."


def plan(premise: str, n: int = 6):
    return plan_shots(write_script(premise), n)


def test_premise_words_become_the_shots():
    shots = plan(PREMISE).shots
    prompts = [s.prompt for s in shots]
    assert len(shots) == 6 and len({s.id for s in shots}) == 6
    assert prompts[0] == "a red circle moving down"  # "red ball falls"
    assert "a red circle moving up" in prompts  # "it rises": the ball continues
    assert "a blue square moving left" in prompts  # "blue square flees to the left"
    assert parse_prompt(prompts[-1])[:2] == ("red", "circle")  # "the ball" is the red one
    assert shots[0].subtitle == "A red ball falls into the dark" and shots[0].transition == "fade"


def test_deterministic_and_premise_dependent():
    assert plan(PREMISE) == plan(PREMISE)
    assert [s.prompt for s in plan("a quiet journey").shots] != [
        s.prompt for s in plan("a loud journey").shots
    ]


@pytest.mark.parametrize(
    "premise", ["a quiet journey", "something happens", "the end of the world", "green things"]
)
def test_every_prompt_is_drawable_and_derived_ones_avoid_held_out(premise):
    for shot in plan(premise, 8).shots:
        attrs = parse_prompt(shot.prompt)
        assert None not in attrs
        assert attrs not in HELD_OUT


def test_explicit_held_out_composition_is_kept():
    # The person asked for it; the planner does not second-guess explicit words.
    assert plan("a red triangle rises", 1).shots[0].prompt == "a red triangle moving up"


def test_more_beats_than_shots_keeps_first_and_last():
    premise = ". ".join(
        f"a {c} circle moves left" for c in ("red", "green", "blue", "yellow", "white")
    )
    prompts = [s.prompt for s in plan(premise, 3).shots]
    assert (
        prompts[0].startswith("a red") and prompts[-1].startswith("a white") and len(prompts) == 3
    )


def test_edited_script_steers_the_shots():
    script = write_script(PREMISE)
    scenes = [
        script.scenes[0].model_copy(update={"summary": "a cyan box drops"}),
        *script.scenes[1:],
    ]
    shots = plan_shots(script.model_copy(update={"scenes": scenes}), 6)
    assert shots.shots[0].prompt == "a cyan square moving down"


def test_split_beats():
    assert split_beats("A falls; then B rises, and C waits. D!") == [
        "A falls",
        "B rises",
        "C waits",
        "D",
    ]


def test_bad_premises():
    with pytest.raises(StoryError, match="premise is empty"):
        write_script("   ")
    with pytest.raises(StoryError, match="not in English.*--translate"):
        write_script("地底之谜：末日之殇")
    with pytest.raises(StoryError, match="1-200"):
        plan_shots(write_script(PREMISE), 0)


def test_other_vocabulary_uses_the_premise_sentences():
    shots = plan_shots(
        write_script("A knight rides out. A dragon wakes.", vocabulary=""), 2, vocabulary=""
    )
    assert [s.prompt for s in shots.shots] == ["A knight rides out", "A dragon wakes"]
