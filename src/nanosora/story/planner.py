"""The offline writer: a deterministic planner that turns a premise into a script and shots.

It writes for the model it will be drawn with. For the shipped shapes model (vocabulary
"shapes") every prompt is a composition the model was trained on, "a {colour} {shape} moving
{direction}":

1. the premise is split into beats (sentences and "then"-clauses); each beat becomes a scene
   whose summary is the beat's own words, so editing `script.json` re-steers the shots;
2. each beat's colour, shape and direction are read with the shapes caption parser (synonyms
   such as "ball", "falls", "crimson" included); a beat that names no colour or shape continues
   the previous beat's object ("it falls"), and what the premise never names is derived from a
   hash of the premise, so the same premise always gives the same film;
3. derived choices avoid the held-out compositions (the model never saw them); compositions the
   premise names explicitly are kept, since that is what the person asked for;
4. shots are spread over the beats; a beat with several shots keeps its object and turns it
   (the next direction clockwise), which is the only camera-free variety the shapes world has.

For models of the scenes world (vocabulary "scenes") `cast.py` writes the shots. For other models
(empty vocabulary) the beats' own sentences are the prompts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from nanosora.shapes.captions import canonical_caption, parse_prompt
from nanosora.shapes.world import COLORS, DIRECTIONS, HELD_OUT, SHAPES
from nanosora.story.schema import Scene, Script, Shot, ShotList, StoryError
from nanosora.story.translate import require_english

# Clockwise turns for a beat's follow-up shots: the object keeps its look and changes course.
_TURN = {"left": "up", "up": "right", "right": "down", "down": "left"}
_CLAUSE_SPLIT = re.compile(
    r"[.!?;:\n]+|,\s*(?:and|but|while)\b|,?\s+\b(?:then|and then|after that|finally|until|while)\b",
    re.I,
)
CAMERA = "static wide shot, black background"


@dataclass(frozen=True)
class Beat:
    """One story beat: its text and the composition that draws it."""

    text: str
    color: str
    shape: str
    direction: str


def digest(*parts: object) -> int:
    """A stable integer from `parts` (Python's hash() is salted per process, this is not)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()[:8], "big")


def split_beats(premise: str) -> list[str]:
    """Sentences and 'then'-clauses of the premise, in order, empty pieces dropped."""
    pieces = [p.strip(" ,-\t") for p in _CLAUSE_SPLIT.split(premise)]
    return [p for p in pieces if p]


def _derive_direction(color: str, shape: str, salt: str, index: int, avoid: str | None) -> str:
    """A direction from the hash, skipping held-out compositions and the previous beat's course."""
    start = digest(salt, "direction", index) % len(DIRECTIONS)
    order = [DIRECTIONS[(start + k) % len(DIRECTIONS)] for k in range(len(DIRECTIONS))]
    ok = [d for d in order if (color, shape, d) not in HELD_OUT]
    return next((d for d in ok if d != avoid), ok[0])


def _derive_look(salt: str) -> tuple[str, str]:
    """Colour and shape for a premise that names neither, from the hash."""
    h = digest(salt, "look")
    return list(COLORS)[h % len(COLORS)], SHAPES[(h // len(COLORS)) % len(SHAPES)]


def resolve_beats(texts: list[str], salt: str) -> list[Beat]:
    """Give every beat text a full composition (see the module docstring, steps 2-3)."""
    parsed = [parse_prompt(t) for t in texts]
    look_c, look_s = _derive_look(salt)
    # What the premise names anywhere is preferred over the hash for beats that name nothing.
    color = next((c for c, _, _ in parsed if c), look_c)
    shape = next((s for _, s, _ in parsed if s), look_s)
    beats: list[Beat] = []
    seen: dict[str, str] = {}  # characters met so far, both ways: colour -> shape, shape -> colour
    for i, (text, (c, s, d)) in enumerate(zip(texts, parsed, strict=True)):
        # "the ball" means the ball met before (its colour), "it" means the previous beat's object.
        color, shape = c or seen.get(s or "", color), s or seen.get(c or "", shape)
        seen.update({color: shape, shape: color})
        if d is None:
            d = _derive_direction(color, shape, salt, i, beats[-1].direction if beats else None)
        beats.append(Beat(text, color, shape, d))
    return beats


def _title(premise: str, beats: list[Beat] | None) -> str:
    """A short title: the premise when short; else 'The <Colour> <Shape>' or its first words."""
    words = premise.strip().rstrip(".!?").split()
    if 0 < len(words) <= 6:  # (a premise of punctuation alone has no words)
        return " ".join(words)[:120]
    if beats:
        return f"The {beats[0].color.title()} {beats[0].shape.title()}"
    return " ".join(words[:5]) + "..."


def write_script(premise: str, vocabulary: str = "shapes") -> Script:
    """Premise -> script: one scene per beat; StoryError for an empty or non-English premise."""
    premise = (premise or "").strip()
    if not premise:
        raise StoryError(
            "the premise is empty: describe the story, e.g. 'a red ball falls, then rises'"
        )
    require_english(premise, "the premise")
    texts = split_beats(premise) or [premise]
    beats = resolve_beats(texts, premise) if vocabulary == "shapes" else None
    scenes = []
    for i, text in enumerate(texts[:50]):
        heading = f"SCENE {i + 1}"
        if beats is not None:
            heading += f" - THE {beats[i].color.upper()} {beats[i].shape.upper()}"
        scenes.append(Scene(id=f"scene{i + 1}", heading=heading, summary=text[:2000]))
    title = _title(premise, beats)
    return Script(title=title, logline=premise[:500], scenes=scenes)


def allocate(num_beats: int, num_shots: int) -> list[int]:
    """Beat index of each shot: spread evenly, earlier beats get the extra shots."""
    if num_beats >= num_shots:  # more beats than shots: keep first, last and evenly spaced ones
        return [round(k * (num_beats - 1) / max(num_shots - 1, 1)) for k in range(num_shots)]
    base, extra = divmod(num_shots, num_beats)
    return [b for b in range(num_beats) for _ in range(base + (b < extra))]


def _turned(beat: Beat, turns: int) -> str:
    """The beat's direction after `turns` clockwise turns, skipping held-out compositions."""
    d = beat.direction
    for _ in range(turns):
        d = _TURN[d]
        while (beat.color, beat.shape, d) in HELD_OUT:
            d = _TURN[d]
    return d


def plan_shots(script: Script, num_shots: int = 6, duration: float = 2.0,
               vocabulary: str = "shapes") -> ShotList:  # fmt: skip
    """Script -> shot list of `num_shots` shots (module docstring, step 4)."""
    if not 1 <= num_shots <= 200:
        raise StoryError(f"the number of shots must be 1-200, got {num_shots}")
    texts = [s.summary for s in script.scenes]
    beats = resolve_beats(texts, script.logline) if vocabulary == "shapes" else None
    owner = allocate(len(texts), num_shots)
    shots = []
    for i, b in enumerate(owner):
        first_of_beat = i == 0 or owner[i - 1] != b
        turns = i - owner.index(b)
        if beats is not None:
            d = _turned(beats[b], turns)
            prompt = canonical_caption(beats[b].color, beats[b].shape, d)
            verb = "moves" if turns == 0 else "turns and moves"
            what = f"The {beats[b].color} {beats[b].shape} {verb} {d}."
        else:
            prompt, what = texts[b][:500], texts[b]
        role = "Opening shot" if i == 0 else "Final shot" if i == num_shots - 1 else f"Shot {i + 1}"
        shots.append(Shot(
            id=f"s{i + 1:02d}", scene=script.scenes[b].id, description=f"{role}. {what}"[:2000],
            prompt=prompt, duration=duration, camera=CAMERA,
            subtitle=texts[b][:300] if first_of_beat else None,
            transition="fade" if first_of_beat else "cut",
        ))  # fmt: skip
    return ShotList(title=script.title, shots=shots)
