"""The translator: offline refusal names the flag; the chat backend translates prompts."""

from __future__ import annotations

import json

import pytest

from nanosora.story.chat import ChatClient
from nanosora.story.schema import ShotList, StoryError, validate
from nanosora.story.translate import is_english, translate_shots

SHOTS = {"title": "T", "shots": [
    {"id": "s01", "description": "d", "prompt": "a red circle moving left"},
    {"id": "s02", "description": "红色的圆", "prompt": "一个红色的圆向下移动"},
]}  # fmt: skip


def test_is_english():
    assert is_english("a red circle, moving left!") and is_english("3 squares")
    assert not is_english("一个红色的圆") and not is_english("красный круг")


def test_offline_refuses_non_english_prompt_naming_the_flag():
    with pytest.raises(
        StoryError, match=r"shot 2 \('s02'\): prompt is not in English.*--translate"
    ):
        translate_shots(validate(ShotList, SHOTS, "x"), None)


def test_english_shots_pass_untouched():
    shots = validate(ShotList, {"shots": SHOTS["shots"][:1]}, "x")
    assert translate_shots(shots, None) is shots


def test_chat_translates_only_the_foreign_prompts(chat_server, chat_cfg):
    chat_server.push(
        ("answer", "{'s02': 'a red circle moving down'}"),
    )
    out = translate_shots(validate(ShotList, SHOTS, "x"), ChatClient(chat_cfg))
    assert [s.prompt for s in out.shots] == ["a red circle moving left", "a red circle moving down"]
    assert out.shots[1].description == "红色的圆"  # for the audience: untouched
    sent = json.loads(chat_server.requests[0]["body"]["messages"][-1]["content"])
    assert sent == {"s02": "一个红色的圆向下移动"}


def test_chat_translation_still_foreign_is_sent_back(chat_server, chat_cfg):
    chat_server.push(
        ("answer", '{"s02": "红色"}'), ("answer", '{"s02": "a red circle moving down"}')
    )
    out = translate_shots(validate(ShotList, SHOTS, "x"), ChatClient(chat_cfg))
    assert out.shots[1].prompt == "a red circle moving down"
    assert "still not English" in chat_server.requests[1]["body"]["messages"][-1]["content"]
