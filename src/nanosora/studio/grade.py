"""Every clip the studio makes is read back and compared with its prompt.

A prompt the scenes grammar parses (`shapes.grammar.parse`) is graded by the scenes grader
(`shapes.grader.grade`, which hands one-object prompts to the probe). Other text that names a
colour, a shape and a direction (`shapes.captions.parse_prompt`, e.g. "a red ball falling") is
graded by the probe as that one-object prompt. A prompt naming none of these cannot be checked:
the page then shows what was read back and says why there is no verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from nanosora.shapes import grader
from nanosora.shapes.captions import parse_prompt
from nanosora.shapes.grammar import Composition, Thing, parse
from nanosora.shapes.probe import ProbeResult, probe_frames


@dataclass(frozen=True)
class Grade:
    """What was read back from a clip and whether it shows its prompt."""

    matches: bool | None  # None: the prompt names nothing the graders can check
    seen: str  # what was read back, in words
    reason: str  # why it does not match or could not be checked; "" when it matches
    grader: str  # "probe" or "scenes grader"

    @property
    def verdict(self) -> str:
        """'matches the prompt', 'does not match: REASON' or 'not checked: REASON'."""
        if self.matches is None:
            return f"not checked: {self.reason}"
        return "matches the prompt" if self.matches else f"does not match: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


def composition(prompt: str) -> Composition | None:
    """What the prompt says as a scenes composition, or None when no grader can read it."""
    try:
        return parse(prompt)[0]
    except ValueError:
        pass
    color, shape, direction = parse_prompt(prompt)
    if color is None or shape is None or direction is None:
        return None
    return Composition("single", (Thing(color, shape),), (direction,))


def _probe_words(r: ProbeResult) -> str:
    if not r.found_frames:
        return "nothing"
    moving = f" moving {r.direction}" if r.direction else ""
    return f"{r.color} {r.shape}{moving}"


def grade_clip(frames: np.ndarray, prompt: str) -> Grade:
    """Grade uint8 `(T, H, W, 3)` frames against ``prompt`` (see the module docstring)."""
    comp = composition(prompt)
    if comp is None:
        return Grade(
            None,
            _probe_words(probe_frames(frames)),
            "the prompt names no colour, shape and direction, nor a scene the grader knows",
            "probe",
        )
    name = "probe" if comp.category == "single" else "scenes grader"
    if len(frames) == 1:
        return _grade_still(frames, comp, name)
    v = grader.grade(frames, comp)
    return Grade(v.passed, v.seen, v.reason, name)


def _grade_still(frames: np.ndarray, comp: Composition, name: str) -> Grade:
    """A single frame shows colour and shape, not motion: one-object prompts only."""
    r = probe_frames(frames)
    seen = _probe_words(r)
    if comp.category != "single":
        return Grade(None, seen, "a single frame cannot show a scene's motion or count", name)
    want = comp.things[0]
    wrong = [f"{n} {g}, expected {w}" for n, g, w in
             (("colour", r.color, want.color), ("shape", r.shape, want.shape)) if g != w]  # fmt: skip
    return Grade(not wrong, seen, "; ".join(wrong), name)
