"""The caption grammar of the scenes world: compositions, templates, synonyms, and the parser.

A `Composition` is what a caption says, as data: the category, the named objects (`Thing`) and
the category's words (a direction, a relation, a verb). Captions are drawn from template
families, one or two per category; a quarter of each family's templates are held out (never
generated for training) to measure generalisation to new phrasings, and a set of compositions
per category (`held_out()`) is never generated for training either.

`parse` inverts every template exactly: it matches the whole normalised caption against one
regular expression per template and returns the one composition it names (tested on every
template). The `single` family's training templates are today's one-object captions
(`nanosora.shapes.captions.TEMPLATES`), so the one-object world is the `single` preset.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from nanosora.shapes import captions
from nanosora.shapes.world import COLORS, DIRECTIONS, SHAPES

Category = Literal[
    "single", "attributes", "numeracy", "spatial", "motion", "dynamic", "actions", "interactions"
]
CATEGORIES: tuple[Category, ...] = (
    "single", "attributes", "numeracy", "spatial", "motion", "dynamic", "actions", "interactions",
)  # fmt: skip
Phrasing = Literal["train", "heldout"]

SIZES = ("small", "big")
RELATIONS = ("left", "right", "above", "below")  # "A is <relation> of B"
WALLS = ("left", "right", "top", "bottom")
ACTIONS = tuple(f"bounce_{w}" for w in WALLS) + ("spin", "jump")
PUSHES = tuple(f"push_{d}" for d in DIRECTIONS)
VERBS = PUSHES + ("behind", "front")  # interactions: A pushes B that way, or passes behind/in front
SPIN_SHAPES = ("square", "triangle")  # a spinning circle looks like a still one


class Thing(NamedTuple):
    """One named object: palette colour, shape, and (attributes only) "small" or "big"."""

    color: str
    shape: str
    size: str = ""


class Composition(NamedTuple):
    """What a caption says. ``words`` by category: single ``(direction,)``; spatial
    ``(relation,)`` (things[0] is that relation of things[1]); motion ``(direction of things[0],
    direction of things[1])``; dynamic ``("turns", new colour)``, ``("grows",)`` or
    ``("shrinks",)``; actions ``(action,)``; interactions ``(verb,)`` (things[0] acts on
    things[1]); attributes and numeracy ``()`` (numeracy repeats one thing count times)."""

    category: Category
    things: tuple[Thing, ...]
    words: tuple[str, ...] = ()


# ---- vocabulary: phrase -> meaning -----------------------------------------------------------

_SHAPE_PLURALS = {"circle": ("circles", "balls", "discs"), "square": ("squares", "boxes", "blocks")}
_SHAPE_PLURALS["triangle"] = ("triangles",)


_SHAPE_WORDS = {s: captions.SHAPE_WORDS[s] for s in SHAPES}


def _inverse(words: dict[Hashable, tuple[str, ...]]) -> dict[str, Hashable]:
    return {phrase: meaning for meaning, phrases in words.items() for phrase in phrases}


_THING = {f"{c} {w}": Thing(c, s) for c in COLORS for s in SHAPES for w in _SHAPE_WORDS[s]}
_WALL_WORDS = {
    "left": ("the left wall", "the left edge", "the left side"),
    "right": ("the right wall", "the right edge", "the right side"),
    "top": ("the top wall", "the top edge", "the ceiling"),
    "bottom": ("the bottom wall", "the bottom edge", "the floor"),
}


def _actions(third: tuple[str, ...], bounce: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """Action phrases: bounce verbs x wall phrases, then spin and jump (third person or -ing)."""
    out = {f"bounce_{w}": tuple(f"{b} {p}" for b in bounce for p in _WALL_WORDS[w]) for w in WALLS}
    return out | {"spin": third[:4], "jump": third[4:]}


# Slot name -> {phrase: meaning}. A template names each slot once; "a"/"b" are object phrases.
SLOTS: dict[str, dict[str, Hashable]] = {
    "c": {c: c for c in COLORS},
    "c2": {c: c for c in COLORS},
    "s": _inverse(_SHAPE_WORDS),  # type: ignore[arg-type]
    "sp": _inverse(_SHAPE_WORDS) | _inverse(_SHAPE_PLURALS),  # type: ignore[arg-type]
    "d": _inverse(captions.DIRECTION_WORDS),  # type: ignore[arg-type]
    "da": _inverse(captions.DIRECTION_WORDS),  # type: ignore[arg-type]
    "db": _inverse(captions.DIRECTION_WORDS),  # type: ignore[arg-type]
    "a": _THING,  # type: ignore[dict-item]
    "b": _THING,  # type: ignore[dict-item]
    "n": _inverse({1: ("one", "a single"), 2: ("two",), 3: ("three",), 4: ("four",)}),
    "be": {"is": 1, "are": 2},  # agreement with the count, never checked against it
    "rel": _inverse(
        {
            "left": ("to the left of", "left of", "on the left of"),
            "right": ("to the right of", "right of", "on the right of"),
            "above": ("above", "over"),
            "below": ("below", "under", "beneath"),
        }
    ),
    "grow3": _inverse(
        {"grows": ("grows", "gets bigger", "expands"), "shrinks": ("shrinks", "gets smaller", "contracts")}
    ),
    "growing": _inverse(
        {
            "grows": ("growing", "getting bigger", "expanding"),
            "shrinks": ("shrinking", "getting smaller", "contracting"),
        }
    ),
    "act3": _inverse(
        _actions(
            ("spins", "rotates", "spins in place", "twirls", "jumps", "hops", "leaps", "jumps up and lands"),
            ("bounces off", "rebounds off", "bounces back from"),
        )
    ),
    "acting": _inverse(
        _actions(
            ("spinning", "rotating", "spinning in place", "twirling", "jumping", "hopping", "leaping"),
            ("bouncing off", "rebounding off"),
        )
    ),
    "pass3": _inverse(
        {
            "behind": ("passes behind", "goes behind", "moves behind", "slides behind"),
            "front": ("passes in front of", "goes in front of", "moves in front of", "slides in front of"),
        }
    ),
    "passing": _inverse(
        {
            "behind": ("passing behind", "going behind", "moving behind", "sliding behind"),
            "front": ("passing in front of", "going in front of", "moving in front of", "sliding in front of"),
        }
    ),
}  # fmt: skip
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large")}
_ITEM = {f"a {z} {p}": Thing(t.color, t.shape, s) for s, zs in _SIZE_WORDS.items() for z in zs for p, t in _THING.items()}  # fmt: skip


# ---- template families ------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """Templates for one kind of composition; ``heldout`` are never used for training captions.

    ``fields`` maps a composition to slot meanings (for generating); ``build`` maps slot
    meanings back (for parsing)."""

    name: str
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    fields: Callable[[Composition], dict[str, Hashable]]
    build: Callable[[dict[str, Hashable]], Composition]


def _thing(v: dict[str, Hashable], key: str) -> Thing:
    return v[key]  # type: ignore[return-value]


FAMILIES: tuple[Family, ...] = (
    Family(
        "single",
        captions.TEMPLATES,
        (
            "there is a {c} {s}, and it is moving {d}",
            "one {c} {s} that travels {d}",
            "the only object, a {c} {s}, keeps moving {d}",
            "{d} goes the {c} {s}",
        ),
        lambda k: {"c": k.things[0].color, "s": k.things[0].shape, "d": k.words[0]},
        lambda v: Composition("single", (Thing(v["c"], v["s"]),), (v["d"],)),  # type: ignore[arg-type]
    ),
    Family(
        "attributes",
        (
            "{objs}", "{objs} on a black background", "A scene with {objs}.", "{objs}, black background",
            "there are {objs}", "a black screen showing {objs}", "video of {objs}", "{objs} sit on black",
            "On a dark screen: {objs}.", "a clip of {objs}", "{objs} resting on black", "we see {objs}",
        ),
        (
            "a black frame containing {objs}", "{objs} appear together", "Look: {objs}.",
            "{objs} are the only things in view",
        ),
        lambda k: {"objs": k.things},
        lambda v: Composition("attributes", v["objs"]),  # type: ignore[arg-type]
    ),
    Family(
        "numeracy",
        (
            "{n} {c} {sp}", "{n} {c} {sp} on a black background", "There {be} {n} {c} {sp}.",
            "exactly {n} {c} {sp}", "{n} {c} {sp}, black background", "the screen shows {n} {c} {sp}",
            "count them: {n} {c} {sp}", "{n} {c} {sp} drifting slowly", "video of {n} {c} {sp}",
            "On black, {n} {c} {sp}.", "{n} {c} {sp} {be} on the screen", "we see {n} {c} {sp}",
        ),
        (
            "a total of {n} {c} {sp}", "{n} {c} {sp} and nothing else", "{n} {c} {sp} {be} visible",
            "In this clip: {n} {c} {sp}.",
        ),
        lambda k: {"n": len(k.things), "c": k.things[0].color, "sp": k.things[0].shape},
        lambda v: Composition("numeracy", (Thing(v["c"], v["sp"]),) * v["n"]),  # type: ignore[arg-type,operator]
    ),
    Family(
        "spatial",
        (
            "a {a} {rel} a {b}", "A {a} is {rel} a {b}.", "a {a} sits {rel} a {b}",
            "{a} {rel} {b}, black background", "there is a {a} {rel} a {b}", "the {a} is {rel} the {b}",
            "On a black background, a {a} {rel} a {b}.", "a {a} placed {rel} a {b}",
            "video of a {a} {rel} a {b}", "a {a} stays {rel} a {b}", "a {a} positioned {rel} a {b}",
            "a {a} hovering {rel} a {b}",
        ),
        (
            "you can see a {a} {rel} a {b}", "a {a} remains {rel} a {b}", "a {a}, {rel} a {b}",
            "a {a} that is {rel} a {b}",
        ),
        lambda k: {"a": k.things[0], "rel": k.words[0], "b": k.things[1]},
        lambda v: Composition("spatial", (_thing(v, "a"), _thing(v, "b")), (v["rel"],)),  # type: ignore[arg-type]
    ),
    Family(
        "motion",
        (
            "a {a} moves {da} while a {b} moves {db}", "A {a} slides {da} and a {b} slides {db}.",
            "a {a} moving {da}, a {b} moving {db}", "{a} going {da}, {b} going {db}, black background",
            "a {a} heads {da} as a {b} heads {db}", "On black, a {a} drifts {da} while a {b} drifts {db}.",
            "the {a} travels {da}; the {b} travels {db}", "a {a} glides {da} and at the same time a {b} glides {db}",
            "video of a {a} moving {da} and a {b} moving {db}", "two shapes: a {a} going {da} and a {b} going {db}",
            "a {a} heading {da} next to a {b} heading {db}", "while a {b} moves {db}, a {a} moves {da}",
        ),
        (
            "a {a} travelling {da} and a {b} travelling {db}", "a {a} makes its way {da} while a {b} makes its way {db}",
            "{da} goes a {a}, {db} goes a {b}", "a {a} that moves {da} and a {b} that moves {db}",
        ),
        lambda k: {"a": k.things[0], "da": k.words[0], "b": k.things[1], "db": k.words[1]},
        lambda v: Composition("motion", (_thing(v, "a"), _thing(v, "b")), (v["da"], v["db"])),  # type: ignore[arg-type]
    ),
    Family(
        "recolor",
        (
            "a {s} turns from {c} to {c2}", "a {c} {s} turns {c2}", "A {c} {s} changes colour to {c2}.",
            "a {s} changing from {c} to {c2}", "the {c} {s} becomes {c2}", "a {c} {s} that turns {c2}",
            "On black, a {c} {s} turns {c2}.", "a {c} {s} switches to {c2}", "video of a {s} going from {c} to {c2}",
            "a {s}, first {c}, then {c2}", "{c} {s} turning {c2}, black background", "a {c} {s} changes to {c2}",
        ),
        (
            "a {c} {s} that ends up {c2}", "the {s} starts {c} and ends {c2}", "a {c} {s} is turning {c2}",
            "from {c} to {c2}: a {s}",
        ),
        lambda k: {"c": k.things[0].color, "s": k.things[0].shape, "c2": k.words[1]},
        lambda v: Composition("dynamic", (Thing(v["c"], v["s"]),), ("turns", v["c2"])),  # type: ignore[arg-type]
    ),
    Family(
        "resize",
        (
            "a {c} {s} {grow3}", "A {c} {s} {grow3} slowly.", "a {c} {s} {growing}",
            "{c} {s} {growing}, black background", "the {c} {s} {grow3} in place", "On black, a {c} {s} {grow3}.",
            "video of a {c} {s} {growing}", "a {c} {s} that {grow3}", "a {c} {s} {growing} steadily",
            "a single {c} {s} {grow3}", "watch the {c} {s} as it {grow3}", "a {c} {s} keeps {growing}",
        ),
        (
            "there is a {c} {s} and it {grow3}", "a {c} {s} is {growing}", "{growing}: a {c} {s}",
            "slowly, a {c} {s} {grow3}",
        ),
        lambda k: {"c": k.things[0].color, "s": k.things[0].shape, "grow3": k.words[0], "growing": k.words[0]},
        lambda v: Composition("dynamic", (Thing(v["c"], v["s"]),), (v.get("grow3") or v["growing"],)),  # type: ignore[arg-type]
    ),
    Family(
        "actions",
        (
            "a {c} {s} {act3}", "A {c} {s} {act3}.", "a {c} {s} {acting}", "{c} {s} {acting}, black background",
            "On a black background, a {c} {s} {act3}.", "the {c} {s} {act3}", "video of a {c} {s} {acting}",
            "a {c} {s} that {act3}", "a single {c} {s} {act3}", "watch a {c} {s} {acting}", "here a {c} {s} {act3}",
            "a lone {c} {s} {acting}",
        ),
        (
            "there is a {c} {s} and it {act3}", "a {c} {s} is {acting}", "{acting}: a {c} {s}",
            "look, a {c} {s} {act3}",
        ),
        lambda k: {"c": k.things[0].color, "s": k.things[0].shape, "act3": k.words[0], "acting": k.words[0]},
        lambda v: Composition("actions", (Thing(v["c"], v["s"]),), (v.get("act3") or v["acting"],)),  # type: ignore[arg-type]
    ),
    Family(
        "push",
        (
            "a {a} hits a {b} and pushes it {d}", "A {a} strikes a {b} and shoves it {d}.",
            "a {a} bumps into a {b}, pushing it {d}", "the {a} hits the {b} and pushes it {d}",
            "a {a} pushes a {b} {d}", "On black, a {a} runs into a {b} and pushes it {d}.",
            "a {a} collides with a {b} and moves it {d}", "video of a {a} pushing a {b} {d}",
            "a {a} knocks a {b} {d}", "a {a} comes in and pushes a {b} {d}", "a {a} shoves a {b} {d}",
            "a {a} meets a {b} and drives it {d}",
        ),
        (
            "a {a} rams a {b} and sends it {d}", "a {b} gets pushed {d} by a {a}",
            "after hitting a {b}, a {a} pushes it {d}", "a {a} pushing a {b} {d}",
        ),
        lambda k: {"a": k.things[0], "b": k.things[1], "d": k.words[0].removeprefix("push_")},
        lambda v: Composition("interactions", (_thing(v, "a"), _thing(v, "b")), (f"push_{v['d']}",)),
    ),
    Family(
        "pass",
        (
            "a {a} {pass3} a {b}", "A {a} {pass3} a {b}.", "a {a} {passing} a {b}", "{a} {passing} {b}, black background",
            "the {a} {pass3} the {b}", "On black, a {a} {pass3} a {b}.", "video of a {a} {passing} a {b}",
            "a moving {a} {pass3} a still {b}", "a {a} travels across and {pass3} a {b}",
            "a {a} crosses the screen and {pass3} a {b}", "a {a} that {pass3} a {b}", "a {a} {passing} a resting {b}",
        ),
        (
            "there is a {b}, and a {a} {pass3} it", "a {a} is {passing} a {b}", "a {a} quietly {pass3} a {b}",
            "look, a {a} {pass3} a {b}",
        ),
        lambda k: {"a": k.things[0], "b": k.things[1], "pass3": k.words[0], "passing": k.words[0]},
        lambda v: Composition("interactions", (_thing(v, "a"), _thing(v, "b")), (v.get("pass3") or v["passing"],)),  # type: ignore[arg-type]
    ),
)  # fmt: skip
_FAMILY = {f.name: f for f in FAMILIES}


def family_of(comp: Composition) -> Family:
    """The template family that phrases ``comp``."""
    match comp.category:
        case "dynamic":
            return _FAMILY["recolor" if comp.words[0] == "turns" else "resize"]
        case "interactions":
            return _FAMILY["push" if comp.words[0].startswith("push_") else "pass"]
    return _FAMILY[comp.category]


# ---- generating captions ----------------------------------------------------------------------


def _choose(slot: str, meaning: Hashable, rng: np.random.Generator | None) -> str:
    """A phrase of ``slot`` meaning ``meaning``: uniformly drawn, or the first when no rng."""
    phrases = [p for p, m in SLOTS[slot].items() if m == meaning]
    if not phrases:
        raise ValueError(f"no phrase for {slot}={meaning!r}")
    return phrases[0] if rng is None else phrases[rng.integers(len(phrases))]


def _objects_phrase(things: tuple[Thing, ...], rng: np.random.Generator | None) -> str:
    """ "a small red circle, a big blue square and a small green triangle"."""
    items = []
    for t in things:
        size = _SIZE_WORDS[t.size][0 if rng is None else rng.integers(len(_SIZE_WORDS[t.size]))]
        items.append(f"a {size} {t.color} {_choose('s', t.shape, rng)}")
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _fill(template: str, comp: Composition, rng: np.random.Generator | None) -> str:
    """Format ``template`` with phrases for ``comp`` (synonyms from ``rng``)."""
    meanings = family_of(comp).fields(comp)
    values: dict[str, str] = {}
    for _, slot, _, _ in string.Formatter().parse(template):
        if slot is None:
            continue
        if slot == "be":
            values[slot] = "are" if len(comp.things) > 1 else "is"
            continue
        meaning = meanings[slot]
        if slot == "objs":
            values[slot] = _objects_phrase(meaning, rng)  # type: ignore[arg-type]
        elif slot in ("a", "b"):
            thing: Thing = meaning  # type: ignore[assignment]
            values[slot] = f"{thing.color} {_choose('s', thing.shape, rng)}"
        elif slot == "sp":
            plural = len(comp.things) > 1
            words = _SHAPE_PLURALS[meaning] if plural else _SHAPE_WORDS[meaning]  # type: ignore[index]
            values[slot] = words[0 if rng is None else rng.integers(len(words))]
        else:
            values[slot] = _choose(slot, meaning, rng)
    return _articles(template.format(**values))


def _articles(text: str) -> str:
    """ "a orange" -> "an orange" (templates write "a" before every noun phrase)."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def templates(comp: Composition, phrasing: Phrasing) -> tuple[str, ...]:
    """The training or held-out templates that phrase ``comp``."""
    fam = family_of(comp)
    return fam.train if phrasing == "train" else fam.heldout


def caption(comp: Composition, rng: np.random.Generator, phrasing: Phrasing = "train") -> str:
    """A random caption of ``comp`` from its training (or held-out) templates and synonyms.

    Single training captions are `captions.caption`'s, unchanged (same draws, same text).
    """
    if comp.category == "single" and phrasing == "train":
        return captions.caption(comp.things[0].color, comp.things[0].shape, comp.words[0], rng)
    options = templates(comp, phrasing)
    return _fill(options[rng.integers(len(options))], comp, rng)


def canonical_caption(comp: Composition, phrasing: Phrasing = "train", index: int = 0) -> str:
    """The fixed phrasing of benchmark prompts: template ``index`` with every slot's first phrase."""
    if comp.category == "single" and phrasing == "train" and index == 0:
        return captions.canonical_caption(comp.things[0].color, comp.things[0].shape, comp.words[0])
    options = templates(comp, phrasing)
    return _fill(options[index % len(options)], comp, None)


# ---- parsing ----------------------------------------------------------------------------------


def describe(comp: Composition) -> str:
    """A composition in words (its canonical caption), for reports and failure reasons."""
    return canonical_caption(comp)


def normalise(text: str) -> str:
    """Lower case, single spaces, no final full stop, "an" -> "a" (what the parser matches)."""
    text = re.sub(r"\s+", " ", text.strip().lower()).removesuffix(".").strip()
    return re.sub(r"\ban\b", "a", text)


def _alternatives(phrases: list[str]) -> str:
    return "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))


_ITEM_RE = _alternatives(list(_ITEM))
_SLOT_RE = {slot: _alternatives(list(words)) for slot, words in SLOTS.items()}
_SLOT_RE["objs"] = f"(?:{_ITEM_RE})(?:, (?:{_ITEM_RE}))* and (?:{_ITEM_RE})"


def _compile(template: str) -> re.Pattern[str]:
    parts = []
    for literal, slot, _, _ in string.Formatter().parse(normalise(template)):
        parts.append(re.escape(literal))
        if slot is not None:
            parts.append(f"(?P<{slot}>{_SLOT_RE[slot]})")
    return re.compile("".join(parts))


@functools.cache
def _patterns() -> list[tuple[Family, Phrasing, re.Pattern[str]]]:
    """Every template as a regex, compiled on first use (a second at import otherwise)."""
    return [
        (fam, phrasing, _compile(t))
        for fam in FAMILIES
        for phrasing, group in (("train", fam.train), ("heldout", fam.heldout))
        for t in group
    ]


def _decode(slot: str, text: str) -> Hashable:
    if slot == "objs":
        found = re.findall(_ITEM_RE, text)
        return tuple(_ITEM[item] for item in found)
    return SLOTS[slot][text]


def parse(text: str) -> tuple[Composition, Phrasing]:
    """The composition a caption names and whether its template is a training or held-out one.

    Raises ValueError when no template matches the whole caption, or when two templates read it
    differently.
    """
    norm = normalise(text)
    found: dict[Composition, Phrasing] = {}
    for fam, phrasing, pattern in _patterns():
        m = pattern.fullmatch(norm)
        if m is None:
            continue
        comp = fam.build({slot: _decode(slot, v) for slot, v in m.groupdict().items()})
        if comp.category == "numeracy" and not 1 <= len(comp.things) <= 4:
            continue
        found.setdefault(comp, phrasing)
    if not found:
        raise ValueError(f"{text!r} matches no template of the scenes grammar")
    if len(found) > 1:
        raise ValueError(f"{text!r} is ambiguous: {sorted(map(describe, found))}")
    return next(iter(found.items()))
