"""Script and shot-list schema: valid documents round-trip; bad ones fail naming shot and field."""

from __future__ import annotations

import json

import pytest

from nanosora.story.schema import Script, ShotList, StoryError, load, save, validate


def shots_doc(**changes) -> dict:
    shot = {"id": "s01", "description": "d", "prompt": "a red circle moving left", "duration": 2.0}
    second = dict(shot, id="s02") | changes
    return {"title": "T", "shots": [shot, second]}


def test_round_trip(tmp_path):
    doc = validate(ShotList, shots_doc(subtitle="Hello", transition="fade"), "x")
    assert load(ShotList, save(doc, tmp_path / "shots.json")) == doc
    assert doc.shots[1].caption == "Hello" and doc.shots[0].camera == "static"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"duration": -1}, "shot 2 ('s02'): duration: Input should be greater than 0"),
        ({"duration": "long"}, "shot 2 ('s02'): duration: Input should be a valid number"),
        ({"prompt": ""}, "shot 2 ('s02'): prompt: String should have at least 1 character"),
        (
            {"prompt": "x" * 501},
            "shot 2 ('s02'): prompt: String should have at most 500 characters",
        ),
        ({"transition": "wipe"}, "shot 2 ('s02'): transition: Input should be 'cut' or 'fade'"),
        ({"id": "s 2/x"}, "shot 2 ('s 2/x'): id: String should match pattern"),
        ({"id": "s01"}, "shot 2 ('s01'): id: duplicates an earlier shot's id"),
        ({"lens": "50mm"}, "shot 2 ('s02'): lens: Extra inputs are not permitted"),
        ({"prompt": "a red\x00circle"}, "shot 2 ('s02'): prompt: contains control characters"),
    ],
)
def test_errors_name_the_shot_and_field(change, message):
    with pytest.raises(StoryError) as e:
        validate(ShotList, shots_doc(**change), "shots.json")
    assert "shots.json does not match the schema" in str(e.value)
    assert message in str(e.value)


def test_missing_fields_are_all_listed():
    doc = {"title": "T", "shots": [{"id": "s01"}]}
    with pytest.raises(StoryError) as e:
        validate(ShotList, doc, "shots.json")
    assert "shot 1 ('s01'): description: Field required" in str(e.value)
    assert "shot 1 ('s01'): prompt: Field required" in str(e.value)


def test_script_errors_name_the_scene():
    doc = {"title": "T", "logline": "L", "scenes": [{"id": "a", "heading": "H", "summary": ""}]}
    with pytest.raises(StoryError, match=r"scene 1 \('a'\): summary"):
        validate(Script, doc, "script.json")


def test_empty_and_non_json_files(tmp_path):
    with pytest.raises(StoryError, match="shots: List should have at least 1 item"):
        validate(ShotList, {"shots": []}, "shots.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(StoryError, match="bad.json is not valid JSON"):
        load(ShotList, tmp_path / "bad.json")
    (tmp_path / "list.json").write_text(json.dumps([1]))
    with pytest.raises(StoryError, match="must be a JSON object"):
        load(ShotList, tmp_path / "list.json")
