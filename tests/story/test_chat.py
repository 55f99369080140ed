"""The chat backend against a real OpenAI-compatible HTTP server on 127.0.0.1 (real `openai` client):
good, slow, failing and malformed answers; and JSON repair on its own."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from nanosora.story.chat import ChatClient, ChatConfig, repair_json
from nanosora.story.schema import Script, StoryError, validate
from nanosora.story.writer import ChatWriter

SCRIPT = {
    "title": "The Fall",
    "logline": "A red ball falls.",
    "scenes": [{"id": "scene1", "heading": "DARK", "summary": "It falls."}],
}
MSG = [{"role": "user", "content": "hi"}]


def test_good_answer_reaches_the_server_with_model_and_messages(chat_server, chat_cfg):
    chat_server.push(("answer", "hello"))
    assert ChatClient(chat_cfg).complete(MSG) == "hello"
    req = chat_server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "test-model" and req["body"]["messages"] == MSG


def test_slow_answer_times_out_then_retry_succeeds(chat_server, chat_cfg):
    chat_server.push(("slow", 1.5, "late"), ("answer", "on time"))
    assert ChatClient(replace(chat_cfg, timeout=0.3)).complete(MSG) == "on time"
    assert len(chat_server.requests) == 2  # gave up on the slow one and asked again


def test_always_slow_fails_with_a_clear_error(chat_server, chat_cfg):
    chat_server.default = ("slow", 1.0, "late")
    with pytest.raises(StoryError, match=r"failed 2 times \(timeout 0.2s\).*Timeout"):
        ChatClient(replace(chat_cfg, timeout=0.2, retries=1)).complete(MSG)


def test_500s_are_retried(chat_server, chat_cfg):
    chat_server.push(("status", 500), ("status", 503), ("answer", "finally"))
    assert ChatClient(chat_cfg).complete(MSG) == "finally"
    assert len(chat_server.requests) == 3


def test_500s_forever_name_the_endpoint(chat_server, chat_cfg):
    with pytest.raises(StoryError, match=f"{chat_server.url}.*failed 3 times.*InternalServerError"):
        ChatClient(chat_cfg).complete(MSG)
    assert len(chat_server.requests) == 3


def test_client_errors_are_not_retried(chat_server, chat_cfg):
    chat_server.push(("status", 404))
    with pytest.raises(StoryError, match="refused the request"):
        ChatClient(chat_cfg).complete(MSG)
    assert len(chat_server.requests) == 1


def test_malformed_json_is_repaired(chat_server, chat_cfg):
    sloppy = (
        "Sure! Here is the script:\n```json\n"
        + json.dumps(SCRIPT, indent=1)
        .replace('"A red ball falls."', "'A red ball falls.'")
        .replace("]", ",]")
        + "\n```"
    )
    chat_server.push(("answer", sloppy))
    script = ChatClient(chat_cfg).complete_json(
        MSG, lambda d: validate(Script, d, "script"), "script"
    )
    assert script.logline == "A red ball falls." and len(chat_server.requests) == 1


def test_garbage_then_good_answer_with_the_problem_sent_back(chat_server, chat_cfg):
    chat_server.push(("answer", "I cannot do JSON today."), ("answer", json.dumps(SCRIPT)))
    script = ChatClient(chat_cfg).complete_json(
        MSG, lambda d: validate(Script, d, "script"), "script"
    )
    assert script.title == "The Fall"
    followup = chat_server.requests[1]["body"]["messages"]
    assert followup[-2] == {"role": "assistant", "content": "I cannot do JSON today."}
    assert "no JSON object" in followup[-1]["content"]


def test_garbage_forever_is_a_clear_error(chat_server, chat_cfg):
    chat_server.default = ("answer", '{"title": ""}')
    with pytest.raises(
        StoryError,
        match=r"(?s)script: the chat model gave no usable answer in 3 tries.*title: String should have at least 1 character",
    ):
        ChatClient(chat_cfg).complete_json(MSG, lambda d: validate(Script, d, "script"), "script")


def test_chat_writer_sends_back_prompts_the_model_cannot_draw(chat_server, chat_cfg):
    shots = {
        "title": "T",
        "shots": [{"id": "s01", "description": "d", "prompt": "a sad robot walks"}],
    }
    good = {
        "title": "T",
        "shots": [{"id": "s01", "description": "d", "prompt": "a red circle moving down"}],
    }
    chat_server.push(
        ("answer", json.dumps(SCRIPT)), ("answer", json.dumps(shots)), ("answer", json.dumps(good))
    )
    writer = ChatWriter(ChatClient(chat_cfg), vocabulary="shapes")
    script = writer.write_script("a red ball falls")
    planned = writer.plan_shots(script, 1)
    assert planned.shots[0].prompt == "a red circle moving down"
    feedback = chat_server.requests[2]["body"]["messages"][-1]["content"]
    assert "shot 1 ('s01')" in feedback and "names no colour or shape or direction" in feedback


def test_config_from_environment_and_missing_settings(monkeypatch, chat_server):
    monkeypatch.setenv("OPENAI_BASE_URL", chat_server.url)
    monkeypatch.setenv("NANOSORA_CHAT_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    chat_server.push(("answer", "ok"))
    assert ChatClient(ChatConfig(retries=0)).complete(MSG) == "ok"
    assert chat_server.requests[0]["body"]["model"] == "env-model"
    monkeypatch.delenv("NANOSORA_CHAT_MODEL")
    with pytest.raises(StoryError, match="--chat-model"):
        ChatConfig().resolved()
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(StoryError, match="--chat-base-url"):
        ChatConfig(model="m").resolved()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('```json\n{"a": [1, 2,],}\n```', {"a": [1, 2]}),
        (
            "{'title': 'the hero's ball', 'ok': True, 'n': None}",
            {"title": "the hero's ball", "ok": True, "n": None},
        ),
        (
            '{title: "x", // note\n "items": [{"a": 1}\n{"a": 2}]}',
            {"title": "x", "items": [{"a": 1}, {"a": 2}]},
        ),
        ('{"a": "x"\n "b": 1}', {"a": "x", "b": 1}),
        (
            '{"shots": [{"id": "s1", "prompt": "a red circle',
            {"shots": [{"id": "s1", "prompt": "a red circle"}]},
        ),
        ('<think>maybe {"no": 1}</think>{"yes": 2} Hope this helps!', {"yes": 2}),
        (
            '{"q": "he said "hi" twice", "s": "two\nlines"}',
            {"q": 'he said "hi" twice', "s": "two\nlines"},
        ),
        ("[1, 2, /* three */ 3]", [1, 2, 3]),
    ],
)
def test_repair_json(text, expected):
    assert repair_json(text) == expected


def test_repair_json_gives_up_on_prose():
    with pytest.raises(ValueError, match="no JSON object"):
        repair_json("I am sorry, I cannot help with that.")
