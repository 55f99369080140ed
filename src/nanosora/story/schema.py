"""The story's two documents, validated: the script (`script.json`) and the shot list (`shots.json`).

Both are written by a writer backend (a chat model or the offline planner), saved as JSON so a
person can edit them between stages (`--stop-after`, `--resume`), and validated every time they
are read back. Validation errors name the shot (position and id) and the field, because the usual
culprit is a chat model's answer or a hand edit, and "shot 3 ('s03'): duration: ..." is what
lets a person fix it.

    script.json  {"title", "logline", "scenes": [{"id", "heading", "summary"}]}
    shots.json   {"title", "shots": [{"id", "scene", "description", "prompt", "duration",
                  "camera", "subtitle", "dialogue", "transition", "seed", "keyframe"}]}
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from nanosora.atomic import write_text_atomic

MAX_PROMPT_CHARS = 500  # the generation pipeline refuses longer prompts (nanosora.generate)
SHOT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"  # ids become file names (keyframes/s01.png)


class StoryError(ValueError):
    """A story input or stage that cannot go on; the message names the shot and field at fault."""


class _Strict(BaseModel):
    """Unknown keys are errors: a misspelt field must not silently fall back to its default."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Scene(_Strict):
    """One scene of the script: where we are and what happens."""

    id: str = Field(pattern=SHOT_ID_PATTERN, description="short identifier, e.g. 'scene1'")
    heading: str = Field(
        min_length=1, max_length=200, description="slug line, e.g. 'THE DARK - NIGHT'"
    )
    summary: str = Field(min_length=1, max_length=2000, description="what happens in the scene")


class Script(_Strict):
    """The script a premise becomes: title, one-sentence logline, scenes."""

    title: str = Field(min_length=1, max_length=120)
    logline: str = Field(min_length=1, max_length=500)
    scenes: list[Scene] = Field(min_length=1, max_length=50)


class Shot(_Strict):
    """One shot: what the camera sees, the English prompt that draws it, and how it is cut in."""

    id: str = Field(pattern=SHOT_ID_PATTERN, description="unique; names the shot's files")
    scene: str = Field(default="", max_length=32, description="id of the scene it belongs to")
    description: str = Field(min_length=1, max_length=2000, description="what the shot shows")
    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="English video prompt"
    )
    duration: float = Field(default=2.0, gt=0, le=30, description="seconds on screen")
    camera: str = Field(default="static", max_length=120, description="framing and movement")
    subtitle: str | None = Field(default=None, max_length=300, description="on-screen text")
    dialogue: str | None = Field(default=None, max_length=300, description="spoken line")
    transition: Literal["cut", "fade"] = Field(default="cut", description="how this shot comes in")
    seed: int | None = Field(
        default=None, ge=0, description="noise seed; None = from the shot's position"
    )
    keyframe: str | None = Field(default=None, description="image file to use as the keyframe")

    @field_validator("prompt")
    @classmethod
    def _printable(cls, v: str) -> str:
        if any(not ch.isprintable() for ch in v):
            raise ValueError("contains control characters")
        return v

    @property
    def caption(self) -> str | None:
        """The text shown as a subtitle: the subtitle, else the dialogue line."""
        return self.subtitle or self.dialogue


class ShotList(_Strict):
    """The ordered shots of the film."""

    title: str = Field(default="", max_length=120)
    shots: list[Shot] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _unique_ids(self) -> ShotList:
        seen: set[str] = set()
        for i, shot in enumerate(self.shots):
            if shot.id in seen:
                raise ValueError(f"shot {i + 1} ({shot.id!r}): id: duplicates an earlier shot's id")
            seen.add(shot.id)
        return self


M = TypeVar("M", bound=BaseModel)


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """'shot 3 ('s03'): duration' from a pydantic error location such as ('shots', 2, 'duration')."""
    if len(loc) >= 2 and loc[0] in ("shots", "scenes") and isinstance(loc[1], int):
        kind = "shot" if loc[0] == "shots" else "scene"
        item = data.get(loc[0])[loc[1]] if isinstance(data, dict) else None
        ident = f" ({item.get('id')!r})" if isinstance(item, dict) and item.get("id") else ""
        field = ".".join(str(p) for p in loc[2:]) or "(the whole entry)"
        return f"{kind} {loc[1] + 1}{ident}: {field}"
    return ".".join(str(p) for p in loc) or "(top level)"


def format_errors(err: ValidationError, data: Any, source: str) -> str:
    """One readable line per schema violation, each naming the shot/scene and the field."""
    lines = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        where = _where(tuple(e["loc"]), data)
        lines.append(f"  {where}: {msg}" if e["loc"] else f"  {msg}")
    return f"{source} does not match the schema:\n" + "\n".join(lines)


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate parsed JSON `data` as `model`; StoryError with every problem listed otherwise."""
    if not isinstance(data, dict):
        raise StoryError(f"{source} must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise StoryError(format_errors(e, data, source)) from None


def load(model: type[M], path: str | os.PathLike) -> M:
    """Read and validate a script or shot list JSON file."""
    p = Path(path)
    if not p.is_file():
        raise StoryError(f"{p}: no such file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoryError(f"{p} is not valid JSON: {e}") from None
    return validate(model, data, str(p))


def save(doc: BaseModel, path: str | os.PathLike) -> Path:
    """Write a script or shot list as indented UTF-8 JSON (non-ASCII kept readable for editing)."""
    # atomic: a killed run never leaves half a shot list to resume from
    text = json.dumps(doc.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
    return write_text_atomic(path, text)


def json_schema_text(model: type[BaseModel]) -> str:
    """The model's JSON schema, compact, for a chat model's instructions."""
    return json.dumps(model.model_json_schema(), separators=(",", ":"))
