"""The translator: non-English premises and prompts become English through the chat backend.

nanosora's text encoders and the shipped model were trained on English captions, so a prompt in
Chinese (or any other language) would be drawn as noise. Offline there is nothing that can
translate, so such text is refused with a message that names the flag that enables translation.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from nanosora.story.chat import ChatClient
from nanosora.story.schema import ShotList, StoryError

TRANSLATE_FLAG = "--translate"
SYSTEM = (
    "You translate prompts for a text-to-video model into natural, concise English. "
    "Keep every visual detail (colours, shapes, objects, motion, directions). "
    "Answer with a JSON object mapping each given key to its English translation, nothing else."
)


def is_english(text: str) -> bool:
    """Whether every letter in `text` is ASCII (a cheap, good-enough test for English prompts)."""
    return all(ch.isascii() for ch in text if unicodedata.category(ch).startswith("L"))


def require_english(text: str, what: str) -> None:
    """StoryError naming `what` and the translation flag when `text` is not English."""
    if not is_english(text):
        raise StoryError(
            f"{what} is not in English ({text[:60]!r}) and the offline planner cannot translate: "
            f"pass {TRANSLATE_FLAG} with a chat backend (--chat-base-url URL or OPENAI_BASE_URL, "
            "and --chat-model NAME or NANOSORA_CHAT_MODEL), or write it in English"
        )


def translate_texts(items: dict[str, str], chat: ChatClient) -> dict[str, str]:
    """Translate `{key: text}` in one chat call; the answer must cover every key, in English."""

    def parse(data: Any) -> dict[str, str]:
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object mapping keys to translations")
        missing = [k for k in items if not isinstance(data.get(k), str) or not data[k].strip()]
        if missing:
            raise ValueError(f"no translation for {', '.join(missing)}")
        foreign = [k for k in items if not is_english(data[k])]
        if foreign:
            raise ValueError(f"the translation of {', '.join(foreign)} is still not English")
        return {k: data[k].strip() for k in items}

    messages = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": json.dumps(items, ensure_ascii=False)},
    ]
    return chat.complete_json(messages, parse, "translation")


def translate_shots(shots: ShotList, chat: ChatClient | None) -> ShotList:
    """English prompts for every shot; offline (chat None) non-English prompts are refused.

    Only prompts are translated: descriptions and subtitles stay in the author's language, since
    they are for the audience, not for the model.
    """
    foreign = {s.id: s.prompt for s in shots.shots if not is_english(s.prompt)}
    if not foreign:
        return shots
    if chat is None:
        first = next(iter(foreign))
        pos = [s.id for s in shots.shots].index(first) + 1
        require_english(foreign[first], f"shot {pos} ({first!r}): prompt")
    assert chat is not None
    english = translate_texts(foreign, chat)
    new = [s.model_copy(update={"prompt": english[s.id][:500]}) if s.id in english else s
           for s in shots.shots]  # fmt: skip
    return shots.model_copy(update={"shots": new})
