"""Writer backends: premise -> script -> shot list, by a chat model or by the offline planner.

Both backends return the same validated documents (`nanosora.story.schema`). The chat writer
asks twice, as a person would: first for the script, then for the shot list of that script. It
tells the model what the video model can draw; for the shapes vocabulary a prompt that does not
name a colour, a shape and a direction is sent back with the reason, like a schema error, and for
the scenes vocabulary one the scenes grammar does not parse (or the world cannot draw).
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

from nanosora.shapes.world import COLORS, DIRECTIONS, SHAPES, missing_attributes
from nanosora.story import cast, planner
from nanosora.story.chat import ChatClient
from nanosora.story.schema import Script, ShotList, StoryError, json_schema_text, validate
from nanosora.story.translate import is_english

WriterKind = Literal["offline", "chat"]

SHAPES_RULES = (
    "The video model can only draw ONE object on a black background, moving in a straight line. "
    f"Colours: {', '.join(COLORS)}. Shapes: {', '.join(SHAPES)}. "
    f"Directions: {', '.join(DIRECTIONS)}. Every shot's 'prompt' must be exactly "
    "'a <colour> <shape> moving <direction>', e.g. 'a red circle moving left'. Tell the story "
    "through which object appears and where it goes."
)


class Writer(Protocol):
    """What the story pipeline needs from a writer backend."""

    def write_script(self, premise: str) -> Script:
        """Premise -> validated script."""
        ...

    def plan_shots(self, script: Script, num_shots: int) -> ShotList:
        """Script -> validated shot list of `num_shots` shots."""
        ...


class OfflineWriter:
    """The deterministic planner (`nanosora.story.planner`); needs no network."""

    def __init__(self, vocabulary: str = "shapes", duration: float = 2.0) -> None:
        self.vocabulary, self.duration = vocabulary, duration

    def write_script(self, premise: str) -> Script:
        """Premise -> script, one scene per beat."""
        if self.vocabulary == cast.SCENES:
            return cast.write_script(premise)
        return planner.write_script(premise, self.vocabulary)

    def plan_shots(self, script: Script, num_shots: int) -> ShotList:
        """Script -> `num_shots` shots the model can draw."""
        if self.vocabulary == cast.SCENES:
            return cast.plan_shots(script, num_shots, self.duration)
        return planner.plan_shots(script, num_shots, self.duration, self.vocabulary)


def check_vocabulary(shots: ShotList, vocabulary: str) -> None:
    """ValueError naming each shot whose prompt the model cannot draw (shapes: all 3 attributes;
    scenes: a caption of the scenes grammar that the world can draw)."""
    if vocabulary == cast.SCENES:
        bad = [f"  shot {i + 1} ({shots.shots[i].id!r}): {reason}"
               for i, reason in cast.check_prompts([s.prompt for s in shots.shots])]  # fmt: skip
        if bad:
            raise ValueError(
                "prompts the model cannot draw:\n" + "\n".join(bad) + "\n" + cast.rules()
            )
        return
    if vocabulary != "shapes":
        return

    bad = []
    for i, s in enumerate(shots.shots):
        if missing := missing_attributes(s.prompt):
            bad.append(
                f"  shot {i + 1} ({s.id!r}): prompt {s.prompt!r} names no {' or '.join(missing)}"
            )
    if bad:
        raise ValueError("prompts the model cannot draw:\n" + "\n".join(bad) + "\n" + SHAPES_RULES)


class ChatWriter:
    """A chat model writes the script and the shot list (OpenAI-compatible endpoint)."""

    def __init__(self, chat: ChatClient, vocabulary: str = "shapes", duration: float = 2.0) -> None:
        self.chat, self.vocabulary, self.duration = chat, vocabulary, duration

    def _system(self) -> str:
        rules = {"shapes": SHAPES_RULES, cast.SCENES: cast.rules()}.get(
            self.vocabulary, "Prompts describe one short shot each."
        )
        return ("You are a film writer and storyboard artist for a text-to-video model. "
                "Answer with one JSON object only, no prose. " + rules)  # fmt: skip

    def write_script(self, premise: str) -> Script:
        """Premise -> script (title, logline, scenes)."""
        if not premise.strip():
            raise StoryError("the premise is empty: describe the story")

        def parse(data: Any) -> Script:
            return validate(Script, data, "the script")

        user = (f"Premise: {premise}\n\nWrite the script as JSON matching this schema:\n"
                f"{json_schema_text(Script)}")  # fmt: skip
        msgs = [{"role": "system", "content": self._system()}, {"role": "user", "content": user}]
        return self.chat.complete_json(msgs, parse, "script")

    def plan_shots(self, script: Script, num_shots: int) -> ShotList:
        """Script -> shot list of exactly `num_shots` shots with English prompts."""

        def parse(data: Any) -> ShotList:
            shots = validate(ShotList, data, "the shot list")
            if len(shots.shots) != num_shots:
                raise ValueError(
                    f"the shot list has {len(shots.shots)} shots; exactly {num_shots} are needed"
                )
            foreign = [s.id for s in shots.shots if not is_english(s.prompt)]
            if foreign:
                raise ValueError(f"prompts must be in English: shots {', '.join(foreign)}")
            check_vocabulary(shots, self.vocabulary)
            return shots

        user = (
            f"Script:\n{json.dumps(script.model_dump(), ensure_ascii=False)}\n\n"
            f"Break it into exactly {num_shots} shots (ids s01, s02, ...; duration about "
            f"{self.duration:g} s each; 'prompt' in English; 'subtitle' optional; 'transition' "
            f"'cut' or 'fade'). Answer as JSON matching this schema:\n{json_schema_text(ShotList)}"
        )
        msgs = [{"role": "system", "content": self._system()}, {"role": "user", "content": user}]
        return self.chat.complete_json(msgs, parse, "shot list")


def make_writer(
    kind: WriterKind, chat: ChatClient | None, vocabulary: str, duration: float
) -> Writer:
    """The one place a writer backend is chosen."""
    match kind:
        case "offline":
            return OfflineWriter(vocabulary, duration)
        case "chat":
            if chat is None:
                raise StoryError(
                    "--writer chat needs a chat backend (--chat-base-url or OPENAI_BASE_URL)"
                )
            return ChatWriter(chat, vocabulary, duration)
    raise StoryError(f"--writer must be offline or chat, not {kind!r}")
