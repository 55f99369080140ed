"""Caption templates for the shapes world, and the parser that reads the attributes back.

Training captions vary word order, verbs and synonyms (DESIGN.md section 3) so the text encoder
has to bind colour, shape and direction rather than memorise one string per clip. `parse_prompt`
inverts every template exactly (tested on all templates x compositions) and reads free text such
as "a blue ball falling" or "from left to right" where the words allow it.
"""

from __future__ import annotations

import re

import numpy as np

# Colour words are the palette names themselves (nanosora.shapes.world.COLORS); synonyms are
# only used when parsing free text, never generated, so captions name the exact palette colour.
COLOR_NAMES = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")

SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "ball", "disc"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "diamond": ("diamond",),  # a new concept (world.NEW_SHAPES), absent from base training data
}

# Direction phrases that read correctly after a verb ("moves ___", "drifting ___").
DIRECTION_WORDS: dict[str, tuple[str, ...]] = {
    "left": ("left", "leftward", "leftwards", "to the left"),
    "right": ("right", "rightward", "rightwards", "to the right"),
    "up": ("up", "upward", "upwards"),
    "down": ("down", "downward", "downwards"),
}

# {c} colour, {s} shape word, {d} direction phrase. Sentence-style templates start upper-case.
TEMPLATES: tuple[str, ...] = (
    "a {c} {s} moving {d}",
    "A {c} {s} slides {d}.",
    "{c} {s}, {d}, black background",
    "a small {c} {s} drifting {d}",
    "On a black background, a {c} {s} moves {d}.",
    "a {c} {s} travels {d} across a dark screen",
    "the {s} is {c} and it moves {d}",
    "{c} {s} going {d}",
    "A single {c} {s} glides {d} over black.",
    "video of a {c} {s} moving {d}",
    "a {s}, colored {c}, heading {d}",
    "moving {d}: one {c} {s}",
)


def caption(color: str, shape: str, direction: str, rng: np.random.Generator) -> str:
    """A random training caption for one composition (template and synonyms drawn from `rng`)."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    shape_word = SHAPE_WORDS[shape][rng.integers(len(SHAPE_WORDS[shape]))]
    direction_word = DIRECTION_WORDS[direction][rng.integers(len(DIRECTION_WORDS[direction]))]
    return template.format(c=color, s=shape_word, d=direction_word)


def canonical_caption(color: str, shape: str, direction: str) -> str:
    """The one fixed phrasing used for evaluation prompts: "a {color} {shape} moving {direction}"."""
    return f"a {color} {shape} moving {direction}"


# Parsing vocabulary: everything the templates generate plus common free-text synonyms.
_COLOR_SYNONYMS: dict[str, str] = {c: c for c in COLOR_NAMES} | {
    "violet": "purple",
    "magenta": "purple",
    "turquoise": "cyan",
    "teal": "cyan",
    "aqua": "cyan",
    "crimson": "red",
    "scarlet": "red",
    "gold": "yellow",
    "golden": "yellow",
}
_SHAPE_SYNONYMS: dict[str, str] = {
    **{w: s for s, words in SHAPE_WORDS.items() for w in words},
    **{"disk": "circle", "dot": "circle", "sphere": "circle", "round": "circle", "orb": "circle"},
    **{"cube": "square", "rectangle": "square", "tile": "square"},
    **{"triangular": "triangle", "pyramid": "triangle", "wedge": "triangle"},
}
_DIRECTION_SYNONYMS: dict[str, str] = {
    **{w: d for d, words in DIRECTION_WORDS.items() for w in words if " " not in w},
    **{"westward": "left", "westwards": "left", "eastward": "right", "eastwards": "right"},
    **{"rising": "up", "rises": "up", "rise": "up", "ascending": "up", "ascends": "up"},
    **{"climbing": "up", "climbs": "up", "upwardly": "up"},
    **{"falling": "down", "falls": "down", "fall": "down", "sinking": "down", "sinks": "down"},
    **{"descending": "down", "descends": "down", "dropping": "down", "drops": "down"},
}
# Where a text names both ends of the path, the destination is the direction.
_EDGE_DIRECTION = {"left": "left", "right": "right", "top": "up", "bottom": "down"}
_FROM_TO = re.compile(
    r"from (?:the )?(left|right|top|bottom)(?: side| edge)? to (?:the )?(left|right|top|bottom)"
)


def _first_match(words: list[str], vocab: dict[str, str]) -> str | None:
    """The attribute named by the first word of `words` found in `vocab`, or None."""
    for w in words:
        if w in vocab:
            return vocab[w]
    return None


def parse_prompt(text: str) -> tuple[str | None, str | None, str | None]:
    """Recover `(color, shape, direction)` from a caption or free text; None where not named.

    Word-level matching (so "reddish" is not "red"); the first mention wins, which keeps "a red
    ball on a white background" red. "from left to right" style phrases name the destination.
    """
    lowered = text.lower()
    words = re.findall(r"[a-z]+", lowered)
    color = _first_match(words, _COLOR_SYNONYMS)
    shape = _first_match(words, _SHAPE_SYNONYMS)
    from_to = _FROM_TO.search(lowered)
    if from_to is not None:
        direction = _EDGE_DIRECTION[from_to.group(2)]
    else:
        direction = _first_match(words, _DIRECTION_SYNONYMS)
    return color, shape, direction
