"""The scenes world (DESIGN.md section 3b): several objects on black, with ground truth as data.

Same canvas, clip length, palette and shapes as the one-object world (64x64, 17 frames at 8 fps),
so one VAE and DiT can learn both; `single` is that world itself (`world.sample_spec` and its
captions, rendered bit for bit alike). Each category realises a `Composition` (what the caption
says) as per-object, per-frame truth: colour, shape, size, position, orientation, depth order, and
after rendering the visible share of every object; events (bounce, contact, colour change, ...)
carry their frame. Sizes and speeds per category are chosen so the grader reads them after mp4
encoding (docs/scenes.md has the measurements): objects are at least 9 px, moving objects at
least 1.5 px per frame, and objects never touch except where the category is about touching.
"""

from __future__ import annotations

import functools
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from tqdm import tqdm

from nanosora.atomic import atomic_path, write_text_atomic
from nanosora.shapes import world
from nanosora.shapes.grammar import (
    ACTIONS,
    CATEGORIES,
    RELATIONS,
    SIZES,
    SPIN_SHAPES,
    VERBS,
    Category,
    Composition,
    Phrasing,
    Thing,
    canonical_caption,
    caption,
    parse,
)
from nanosora.shapes.world import COLORS, DIRECTIONS, FPS, NUM_FRAMES, SHAPES, SIZE, VELOCITY
from nanosora.video.io import write_video

Split = Literal["train", "heldout", "all"]
T = NUM_FRAMES
FRAMES = np.arange(T, dtype=np.float64)

# Bounding-box sides in px, inclusive ranges. The attributes words name two bands with a gap
# between them, so a size reads as one band or the other after mp4 encoding.
SIDES = {"small": (9, 11), "big": (17, 21)}
MEDIUM = (11, 15)
DRIFT = 0.6  # px per frame at most: "still" objects drift a little, as in real footage
GAP = 3  # px between the boxes of objects that must not touch, in every frame

# Never generated for training (`split="train"`); every colour, shape, size, relation and verb in
# them still is. Written as captions, read with the grammar. Single: DESIGN.md section 3's eight.
HELD_OUT_CAPTIONS: dict[Category, tuple[str, ...]] = {
    "single": tuple(world.canonical_caption(*c) for c in sorted(world.HELD_OUT)),
    "attributes": (
        "a small red circle and a big blue triangle", "a big green square and a small yellow circle",
        "a small purple triangle and a big orange square", "a big cyan circle and a small white square",
        "a small blue square and a big red triangle", "a big yellow triangle and a small purple circle",
        "a small orange circle and a big green triangle", "a big white triangle and a small cyan square",
        "a small green circle and a big purple square", "a big red square and a small orange triangle",
        "a small white circle and a big yellow square", "a big blue circle and a small green triangle",
        "a small cyan triangle and a big red circle", "a big orange circle and a small blue square",
        "a small yellow square and a small white circle", "a big purple triangle and a big cyan circle",
    ),
    "numeracy": (
        "one red triangle", "one green circle", "one blue square", "one white triangle",
        "two yellow circles", "two purple squares", "two orange triangles", "two cyan circles",
        "three red squares", "three green triangles", "three blue circles", "three white squares",
        "four yellow triangles", "four purple circles", "four orange squares", "four cyan triangles",
    ),
    "spatial": (
        "a red circle above a blue square", "a green triangle below a yellow circle",
        "a purple square to the left of an orange circle", "a cyan circle to the right of a white triangle",
        "a blue triangle above a red square", "a yellow square below a purple triangle",
        "an orange circle to the left of a green square", "a white square to the right of a cyan triangle",
        "a red triangle to the left of a green circle", "a blue circle to the right of a yellow triangle",
        "a purple circle above a cyan square", "an orange square below a white circle",
        "a green square above a red triangle", "a yellow circle to the left of a blue square",
        "a cyan triangle below an orange square", "a white circle to the right of a purple square",
    ),
    "motion": (
        "a red circle moves up while a blue square moves left",
        "a green triangle moves right while a yellow circle moves down",
        "a purple square moves down while an orange triangle moves up",
        "a cyan circle moves left while a white square moves right",
        "a blue triangle moves up while a red square moves down",
        "a yellow square moves right while a purple circle moves left",
        "an orange circle moves down while a green square moves right",
        "a white triangle moves left while a cyan square moves up",
        "a red square moves right while a green circle moves right",
        "a blue circle moves down while a yellow triangle moves down",
        "a purple triangle moves left while a white circle moves up",
        "an orange square moves up while a cyan triangle moves right",
        "a green circle moves up while a red triangle moves left",
        "a yellow triangle moves left while a blue square moves down",
        "a white square moves down while an orange circle moves left",
        "a cyan circle moves right while a purple triangle moves up",
    ),
    "dynamic": (
        "a circle turns from red to green", "a triangle turns from blue to yellow",
        "a square turns from purple to orange", "a circle turns from cyan to white",
        "a triangle turns from green to red", "a square turns from yellow to cyan",
        "a circle turns from orange to purple", "a triangle turns from white to blue",
        "a red triangle grows", "a blue square grows", "a yellow circle grows", "a cyan triangle grows",
        "a green circle shrinks", "a purple triangle shrinks", "an orange square shrinks", "a white circle shrinks",
    ),
    "actions": (
        "a red circle bounces off the left wall", "a green square bounces off the right wall",
        "a blue triangle bounces off the top wall", "a yellow circle bounces off the bottom wall",
        "a purple square bounces off the left wall", "an orange triangle bounces off the right wall",
        "a cyan circle bounces off the top wall", "a white square bounces off the bottom wall",
        "a red square spins", "a green triangle spins", "a cyan square spins", "a purple triangle spins",
        "a blue circle jumps", "a yellow triangle jumps", "an orange square jumps", "a white circle jumps",
    ),
    "interactions": (
        "a red square hits a blue circle and pushes it right",
        "a green circle hits a yellow triangle and pushes it left",
        "a purple triangle hits an orange square and pushes it up",
        "a cyan circle hits a white square and pushes it down",
        "a blue triangle hits a red circle and pushes it left",
        "a yellow square hits a green triangle and pushes it right",
        "an orange circle hits a purple circle and pushes it down",
        "a white triangle hits a cyan square and pushes it up",
        "a red triangle passes behind a green square", "a blue circle passes behind a yellow circle",
        "a purple square passes behind a cyan triangle", "a white circle passes behind an orange square",
        "a green circle passes in front of a red square", "a yellow triangle passes in front of a blue circle",
        "a cyan square passes in front of a purple circle", "an orange triangle passes in front of a white square",
    ),
}  # fmt: skip


@functools.cache
def held_out() -> dict[Category, tuple[Composition, ...]]:
    """The held-out compositions per category, read from their captions on first use (parsing
    them at import would cost every command that imports the package about a second)."""
    return {cat: tuple(parse(t)[0] for t in texts) for cat, texts in HELD_OUT_CAPTIONS.items()}


_INVERSE_RELATION = {"left": "right", "right": "left", "above": "below", "below": "above"}


def key(comp: Composition) -> Composition:
    """``comp`` up to the order in which the caption names things: what held-out sets compare."""
    match comp.category:
        case "attributes":
            return comp._replace(things=tuple(sorted(comp.things)))
        case "motion":
            pairs = sorted(zip(comp.things, comp.words))
            return comp._replace(
                things=tuple(p[0] for p in pairs), words=tuple(p[1] for p in pairs)
            )
        case "spatial":
            a, b = comp.things
            return min(
                comp, comp._replace(things=(b, a), words=(_INVERSE_RELATION[comp.words[0]],))
            )
    return comp


@functools.cache
def _held_keys() -> frozenset[Composition]:
    return frozenset(key(c) for comps in held_out().values() for c in comps)


def is_held_out(comp: Composition) -> bool:
    """True if ``comp`` is, or (attributes) contains, a held-out composition."""
    if comp.category == "attributes":
        return any(set(h.things) <= set(comp.things) for h in held_out()["attributes"])
    return key(comp) in _held_keys()


# ---- ground truth ----------------------------------------------------------------------------


@dataclass
class ObjectTruth:
    """One object over the clip. Positions are the top-left corner of the unrotated bounding box
    (as in `world.ClipSpec`); the object turns by ``angle`` (degrees, clockwise on screen) about
    its centroid (the box centre; a triangle's is 2/3 of the way down from its apex)."""

    shape: str
    color: tuple[str, ...]  # (T,) palette names
    x: np.ndarray  # (T,) px
    y: np.ndarray  # (T,) px
    side: np.ndarray  # (T,) bounding-box side, px
    angle: np.ndarray  # (T,) degrees
    depth: int = 0  # drawing order: larger is in front

    def centroid(self) -> tuple[np.ndarray, np.ndarray]:
        """(T,) x and y of the point the object turns about."""
        down = 2 / 3 if self.shape == "triangle" else 1 / 2
        return self.x + self.side / 2, self.y + self.side * down


@dataclass
class Scene:
    """A clip as data: the composition its caption states, and every object and event."""

    composition: Composition
    caption: str
    split: Literal["train", "heldout"]
    objects: list[ObjectTruth]  # things[i] of the composition is objects[i]
    events: list[dict] = field(default_factory=list)


def _object(
    shape: str,
    color: str,
    x: np.ndarray | float,
    y: np.ndarray | float,
    side: np.ndarray | float,
    angle: np.ndarray | float = 0.0,
    depth: int = 0,
) -> ObjectTruth:
    """An ObjectTruth with scalars broadcast over the clip."""

    def per_frame(v: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(v, np.float64), (T,)).copy()

    return ObjectTruth(
        shape, (color,) * T, per_frame(x), per_frame(y), per_frame(side), per_frame(angle), depth
    )


# ---- compositions -----------------------------------------------------------------------------


def _thing(rng: np.random.Generator, shapes: tuple[str, ...] = SHAPES, size: str = "") -> Thing:
    colors = list(COLORS)
    return Thing(colors[rng.integers(len(colors))], shapes[rng.integers(len(shapes))], size)


def _pick(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[rng.integers(len(options))]


def _two_things(rng: np.random.Generator, distinct_colors: bool = False) -> tuple[Thing, Thing]:
    """Two things that differ (in colour, when asked), so each can be told apart."""
    while True:
        a, b = _thing(rng), _thing(rng)
        if a != b and not (distinct_colors and a.color == b.color):
            return a, b


def draw_composition(rng: np.random.Generator, category: Category) -> Composition:
    """A composition of ``category`` drawn from all of them (held-out ones included)."""
    match category:
        case "single":
            c, s, d = world.ALL_COMPOSITIONS[rng.integers(len(world.ALL_COMPOSITIONS))]
            return Composition("single", (Thing(c, s),), (d,))
        case "attributes":
            n = int(rng.integers(2, 4))
            things: list[Thing] = []
            while len(things) < n:
                t = _thing(rng, size=_pick(rng, SIZES))
                if t not in things:
                    things.append(t)
            return Composition("attributes", tuple(things))
        case "numeracy":
            return Composition("numeracy", (_thing(rng),) * int(rng.integers(1, 5)))
        case "spatial":
            return Composition("spatial", _two_things(rng), (_pick(rng, RELATIONS),))
        case "motion":
            return Composition("motion", _two_things(rng), (_pick(rng, DIRECTIONS), _pick(rng, DIRECTIONS)))  # fmt: skip
        case "dynamic":
            kind = _pick(rng, ("turns", "turns", "grows", "shrinks"))
            t = _thing(rng)
            if kind != "turns":
                return Composition("dynamic", (t,), (kind,))
            return Composition("dynamic", (t,), ("turns", _pick(rng, [c for c in COLORS if c != t.color])))  # fmt: skip
        case "actions":
            action = _pick(rng, ACTIONS)
            return Composition("actions", (_thing(rng, SPIN_SHAPES if action == "spin" else SHAPES),), (action,))  # fmt: skip
        case "interactions":
            verb = _pick(rng, VERBS[:4]) if rng.random() < 0.5 else _pick(rng, VERBS[4:])
            return Composition("interactions", _two_things(rng, distinct_colors=True), (verb,))
    raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")


def composition_for(rng: np.random.Generator, category: Category, split: Split) -> Composition:
    """A composition of ``split``: never a held-out one for "train", only those for "heldout"."""
    match split:
        case "heldout":
            return held_out()[category][rng.integers(len(held_out()[category]))]
        case "train":
            while is_held_out(comp := draw_composition(rng, category)):
                pass
            return comp
        case "all":
            return draw_composition(rng, category)
    raise ValueError(f"unknown split {split!r}; expected 'train', 'heldout' or 'all'")


def _things_varied(things: tuple[Thing, ...], i: int) -> list[tuple[Thing, ...]]:
    """``things`` with thing ``i``'s colour, shape or size changed, one at a time."""
    t = things[i]
    variants = [t._replace(color=c) for c in COLORS if c != t.color]
    variants += [t._replace(shape=s) for s in SHAPES if s != t.shape]
    variants += [t._replace(size=z) for z in SIZES if t.size and z != t.size]
    return [things[:i] + (v,) + things[i + 1 :] for v in variants]


def near_misses(comp: Composition) -> list[Composition]:
    """Compositions of the same category that differ from ``comp`` in one thing's colour, shape
    or size, the count, the relation, a direction, the verb or the roles: what a grader must
    reject on a clip of ``comp``. Only drawable ones (e.g. no spinning circle)."""
    out: list[Composition] = []
    cat, things, words = comp
    match cat:
        case "numeracy":
            out += [comp._replace(things=(things[0],) * n) for n in range(1, 5) if n != len(things)]
            out += [comp._replace(things=(v[0],) * len(things)) for v in _things_varied(things[:1], 0)]  # fmt: skip
            return out
        case "single" | "motion":
            out += [comp._replace(words=words[:i] + (d,) + words[i + 1 :]) for i in range(len(words)) for d in DIRECTIONS if d != words[i]]  # fmt: skip
        case "spatial":
            out += [comp._replace(words=(r,)) for r in RELATIONS if r != words[0]]
        case "dynamic":
            kinds = [("grows",), ("shrinks",)] + [
                ("turns", c) for c in COLORS if c != things[0].color
            ]
            out += [comp._replace(words=k) for k in kinds if k != words]
        case "actions":
            out += [comp._replace(words=(a,)) for a in ACTIONS if a != words[0]]
        case "interactions":
            out += [comp._replace(words=(v,)) for v in VERBS if v != words[0]]
            out.append(comp._replace(things=things[::-1]))
    out += [comp._replace(things=v) for i in range(len(things)) for v in _things_varied(things, i)]
    return [
        m for m in out
        if key(m) != key(comp) and len(set(m.things)) == len(m.things)
        if not (m.words[:1] == ("spin",) and m.things[0].shape not in SPIN_SHAPES)
        and not (cat == "interactions" and m.things[0].color == m.things[1].color)
        and not (cat == "dynamic" and m.words[0] == "turns" and m.words[1] == m.things[0].color)
    ]  # fmt: skip


# ---- realising a composition as objects and events -------------------------------------------


def _side(rng: np.random.Generator, band: tuple[int, int]) -> int:
    return int(rng.integers(band[0], band[1] + 1))


def _drift(rng: np.random.Generator) -> np.ndarray:
    """A slow velocity (px per frame) in a random direction."""
    angle, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0, DRIFT)
    return np.array([np.cos(angle), np.sin(angle)]) * speed


def _apart(boxes: list[tuple[np.ndarray, np.ndarray, float]], gap: float) -> bool:
    """True if the last `(x, y, side)` box is ``gap`` px from every other along x or y in every
    frame (the others are apart already)."""
    xa, ya, sa = boxes[-1]
    for xb, yb, sb in boxes[:-1]:
        gx = np.maximum(xa - (xb + sb), xb - (xa + sa))
        gy = np.maximum(ya - (yb + sb), yb - (ya + sa))
        if (np.maximum(gx, gy) < gap).any():
            return False
    return True


def _place(
    rng: np.random.Generator, sides: list[float], velocities: list[np.ndarray], gap: float = GAP
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Start positions for objects moving at constant ``velocities`` (px per frame) so that each
    stays inside the canvas and all are ``gap`` apart in every frame -> per-object (x, y) paths."""
    for _ in range(100):
        paths: list[tuple[np.ndarray, np.ndarray]] = []
        for side, v in zip(sides, velocities):
            for _ in range(100):  # this object, apart from those placed so far
                start = []
                for axis in range(2):
                    travel = v[axis] * (T - 1)
                    lo, hi = max(0.0, -travel), SIZE - side - max(0.0, travel)
                    if hi < lo:
                        raise ValueError(f"an object of {side} px moving {v} cannot stay inside")
                    start.append(rng.uniform(lo, hi))
                path = (start[0] + v[0] * FRAMES, start[1] + v[1] * FRAMES)
                boxes = [(x, y, s) for (x, y), s in zip([*paths, path], sides)]
                if _apart(boxes, gap):
                    paths.append(path)
                    break
            else:
                break  # start again: the earlier objects leave no room for this one
        if len(paths) == len(sides):
            return paths
    raise ValueError(f"could not place {len(sides)} objects of {sides} px apart")


def _single(rng: np.random.Generator, split: Split) -> Scene:
    """The one-object world unchanged: same draws from ``rng``, same caption, same pixels."""
    spec = world.sample_spec(rng, split)
    pos = np.array([spec.position(k) for k in range(T)])
    obj = _object(spec.shape, spec.color, pos[:, 0], pos[:, 1], spec.size_px)
    comp = Composition("single", (Thing(spec.color, spec.shape),), (spec.direction,))
    return Scene(comp, spec.caption, spec.split, [obj])


def _still_objects(rng: np.random.Generator, things: tuple[Thing, ...], sides: list[int]) -> list[ObjectTruth]:  # fmt: skip
    """Drifting, never-touching objects (attributes, numeracy)."""
    paths = _place(rng, sides, [_drift(rng) for _ in things])
    return [_object(t.shape, t.color, x, y, s) for t, (x, y), s in zip(things, paths, sides)]


def _spatial(
    rng: np.random.Generator, comp: Composition, centre: float | None = None
) -> list[ObjectTruth]:
    """A at ``relation`` of B: centres 4-14 px apart beyond touching along the relation's axis,
    at most a quarter of that across it; both drift together. B anywhere in the frame, or with
    ``centre`` the pair's midpoint within ``centre`` px of the frame's centre at the middle frame
    (a layout the words decide more of: training data, not the world's own clips)."""
    (a, b), relation = comp.things, comp.words[0]
    sa, sb = _side(rng, MEDIUM), _side(rng, MEDIUM)
    v = _drift(rng)
    sign, axis = {"left": (-1, 0), "right": (1, 0), "above": (-1, 1), "below": (1, 1)}[relation]
    for _ in range(1000):
        along = (sa + sb) / 2 + rng.uniform(4, 14)
        offset = np.zeros(2)
        offset[axis] = sign * along
        offset[1 - axis] = rng.uniform(-along / 4, along / 4)
        if centre is None:
            b_xy = rng.uniform(0, SIZE - sb, 2)
            a_xy = b_xy + sb / 2 + offset - sa / 2  # A's centre at B's centre + offset
        else:
            mid = SIZE / 2 - v * (T - 1) / 2 + rng.uniform(-centre, centre, 2)
            a_xy, b_xy = mid + offset / 2 - sa / 2, mid - offset / 2 - sb / 2
        boxes = [(xy[0] + v[0] * FRAMES, xy[1] + v[1] * FRAMES, s) for xy, s in ((a_xy, sa), (b_xy, sb))]  # fmt: skip
        if all(((p >= 0) & (p + s <= SIZE)).all() for x, y, s in boxes for p in (x, y)):
            return [_object(t.shape, t.color, x, y, s) for t, (x, y, s) in zip((a, b), boxes)]
    raise ValueError(f"could not place {comp}")


def _motion(rng: np.random.Generator, comp: Composition) -> list[ObjectTruth]:
    """Each thing at 1.5-2.5 px per frame in its own direction, never within 2 px of the other."""
    sides = [_side(rng, (10, 14)) for _ in comp.things]
    velocities = [np.array(VELOCITY[d], np.float64) * rng.uniform(1.5, 2.5) for d in comp.words]
    paths = _place(rng, sides, velocities, gap=2)
    return [_object(t.shape, t.color, x, y, s) for t, (x, y), s in zip(comp.things, paths, sides)]


def _dynamic(rng: np.random.Generator, comp: Composition) -> tuple[list[ObjectTruth], list[dict]]:
    """A still object that changes colour once (frame 6-10) or grows or shrinks between 9-11 px
    and 18-22 px (linearly, starting by frame 2 and ending from frame 14) about a fixed centre."""
    (t,) = comp.things
    if comp.words[0] == "turns":
        side = _side(rng, (12, 18))
        x, y = rng.uniform(0, SIZE - side, 2)
        k = int(rng.integers(6, 11))
        obj = _object(t.shape, t.color, x, y, side)
        obj.color = (t.color,) * k + (comp.words[1],) * (T - k)
        return [obj], [{"type": "color_change", "frame": k, "object": 0, "from": t.color, "to": comp.words[1]}]  # fmt: skip
    small, big = rng.uniform(9, 11), rng.uniform(18, 22)
    start, end = (small, big) if comp.words[0] == "grows" else (big, small)
    k0, k1 = int(rng.integers(0, 3)), int(rng.integers(14, 17))
    side = start + (end - start) * np.clip((FRAMES - k0) / (k1 - k0), 0, 1)
    cx, cy = rng.uniform(big / 2, SIZE - big / 2, 2)
    event = {"type": "size_change", "frame": k0, "end": k1, "object": 0, "from": round(start, 2), "to": round(end, 2)}  # fmt: skip
    return [_object(t.shape, t.color, cx - side / 2, cy - side / 2, side)], [event]


def _actions(rng: np.random.Generator, comp: Composition) -> tuple[list[ObjectTruth], list[dict]]:
    """bounce: at 2.5-4 px per frame into the wall, touching it at frame 5-11, and straight back;
    spin: 12-24 degrees per frame either way, in place; jump: up 10-18 px and back down on a
    parabola (takeoff frame 1-3, 10-13 frames in the air), its top never within 5 px of the
    ceiling so a jump never touches a wall."""
    (t,), action = comp.things, comp.words[0]
    side = _side(rng, (12, 16))
    if action.startswith("bounce_"):
        wall = action.removeprefix("bounce_")
        k, v = int(rng.integers(5, 12)), rng.uniform(2.5, 4.0)
        near = v * np.abs(FRAMES - k)  # distance from the wall
        along = near if wall in ("left", "top") else SIZE - side - near
        across = rng.uniform(0, SIZE - side)
        x, y = (along, across) if wall in ("left", "right") else (across, along)
        return [_object(t.shape, t.color, x, y, side)], [{"type": "bounce", "frame": k, "object": 0, "wall": wall}]  # fmt: skip
    if action == "spin":
        rate = rng.uniform(12, 24) * (1 if rng.random() < 0.5 else -1)
        margin = 0.75 * side + 1  # the turning shape stays within this of its centroid
        cx, cy = rng.uniform(margin, SIZE - margin, 2)
        obj = _object(t.shape, t.color, 0, 0, side, rate * FRAMES)
        gx, gy = obj.centroid()
        obj.x, obj.y = cx - gx, cy - gy
        return [obj], [{"type": "spin", "frame": 0, "end": T - 1, "object": 0, "degrees": round(rate * (T - 1), 1)}]  # fmt: skip
    height = rng.uniform(10, 18)
    t0 = int(rng.integers(1, 4))
    t1 = t0 + int(rng.integers(10, 14))
    t1 = min(t1, T - 2)
    rest = rng.uniform(5 + height, SIZE - side)
    air = np.clip((FRAMES - t0) * (t1 - FRAMES), 0, None)
    y = rest - 4 * height * air / (t1 - t0) ** 2
    x = rng.uniform(0, SIZE - side)
    events = [{"type": "takeoff", "frame": t0, "object": 0}, {"type": "land", "frame": t1, "object": 0}]  # fmt: skip
    return [_object(t.shape, t.color, x, y, side)], events


def _axis_paths(
    d: str,
    starts: tuple[np.ndarray, np.ndarray],
    sides: tuple[float, float],
    across: tuple[float, float],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Image (x, y) paths from positions measured along direction ``d`` (the near edge, growing
    in ``d``) and positions across it (top-left coordinate)."""
    paths = []
    for u, s, c in zip(starts, sides, across):
        along = u if d in ("right", "down") else SIZE - u - s
        paths.append((along, np.full(T, c)) if d in ("left", "right") else (np.full(T, c), along))
    return paths


def _interactions(rng: np.random.Generator, comp: Composition) -> tuple[list[ObjectTruth], list[dict]]:  # fmt: skip
    """push: A (10-13 px) moves at 1.5-2.1 px per frame into still B (11-14 px), touches it at
    frame 5-9 and pushes it on, in contact, to the end. behind / front: A (10-12 px) crosses B
    (16-20 px, a triangle 18-20 as it covers less; still) at 2.5-3.2 px per frame, from clear of
    one side to clear of the other, through B's centroid, drawn behind or in front of it."""
    (a, b), verb = comp.things, comp.words[0]
    for _ in range(1000):
        if verb.startswith("push_"):
            d = verb.removeprefix("push_")
            sa, sb = _side(rng, (10, 13)), _side(rng, (11, 14))
            k, v = int(rng.integers(5, 10)), rng.uniform(1.5, 2.1)
            lo, hi = v * k + sa, SIZE - sb - v * (T - 1 - k)
            if hi < lo:
                continue
            contact = rng.uniform(lo, hi)  # where A's front meets B's back, along d
            front_a = contact + v * (FRAMES - k)
            back_b = np.where(FRAMES < k, contact, front_a)
            cb = rng.uniform(0, SIZE - sb)
            ca = np.clip(cb + (sb - sa) / 2 + rng.uniform(-1, 1) * min(sa, sb) / 4, 0, SIZE - sa)
            paths = _axis_paths(d, (front_a - sa, back_b), (sa, sb), (ca, cb))
            depths = (0, 0)
            events = [{"type": "contact", "frame": k, "objects": [0, 1]}]
        else:
            d = _pick(rng, DIRECTIONS)
            sa, sb = _side(rng, (10, 12)), _side(rng, (18 if b.shape == "triangle" else 16, 20))
            v = rng.uniform(2.5, 3.2)
            ub = rng.uniform(0, SIZE - sb)
            lo, hi = max(0.0, ub + sb + 2 - v * (T - 1)), min(ub - 2 - sa, SIZE - sa - v * (T - 1))
            if hi < lo:
                continue
            u = rng.uniform(lo, hi) + v * FRAMES
            cb = rng.uniform(0, SIZE - sb)
            # A's path runs through B's centroid across the motion (a triangle's sits low).
            down = 2 / 3 if b.shape == "triangle" and d in ("left", "right") else 1 / 2
            ca = cb + sb * down - sa / 2 + rng.uniform(-1, 1)
            paths = _axis_paths(d, (u, np.full(T, ub)), (sa, sb), (ca, cb))
            depths = (0, 1) if verb == "behind" else (1, 0)
            events = []
        objects = [
            _object(t.shape, t.color, x, y, s, depth=z)
            for t, (x, y), s, z in zip((a, b), paths, (sa, sb), depths)
        ]
        return objects, events
    raise ValueError(f"could not place {comp}")


def realise(
    rng: np.random.Generator, comp: Composition, spatial_centre: float | None = None
) -> tuple[list[ObjectTruth], list[dict]]:
    """Objects (in the order the composition names them) and events that show ``comp``;
    ``spatial_centre``: see `_spatial`."""
    match comp.category:
        case "attributes":
            return _still_objects(rng, comp.things, [_side(rng, SIDES[t.size]) for t in comp.things]), []  # fmt: skip
        case "numeracy":
            return _still_objects(rng, comp.things, [_side(rng, (10, 14)) for _ in comp.things]), []  # fmt: skip
        case "spatial":
            return _spatial(rng, comp, spatial_centre), []
        case "motion":
            return _motion(rng, comp), []
        case "dynamic":
            return _dynamic(rng, comp)
        case "actions":
            return _actions(rng, comp)
        case "interactions":
            return _interactions(rng, comp)
        case "single":
            (t,), d = comp.things, comp.words[0]
            speed = rng.uniform(world.MIN_SPEED, world.MAX_SPEED)
            side = _side(rng, (world.MIN_SIDE, world.MAX_SIDE))
            (x, y), = _place(rng, [side], [np.array(VELOCITY[d], np.float64) * speed])  # fmt: skip
            return [_object(t.shape, t.color, x, y, side)], []
    raise ValueError(f"unknown category {comp.category!r}")


def sample_scene(
    rng: np.random.Generator,
    category: Category,
    split: Split = "train",
    phrasing: Phrasing = "train",
    spatial_centre: float | None = None,
) -> Scene:
    """Draw one clip of ``category``: a composition of ``split``, its realisation and a caption.

    ``single`` with training phrasing is `world.sample_spec` itself (the same draws from ``rng``).
    ``spatial_centre``: see `_spatial`.
    """
    if category == "single" and phrasing == "train":
        return _single(rng, split)
    comp = composition_for(rng, category, split)
    objects, events = realise(rng, comp, spatial_centre)
    text = caption(comp, rng, phrasing)
    return Scene(comp, text, "heldout" if is_held_out(comp) else "train", objects, events)


# ---- rendering --------------------------------------------------------------------------------


def truth_clip(text: str, rng: np.random.Generator) -> np.ndarray:
    """A clip of the world realising the composition ``text`` states, its layout from ``rng``."""
    comp = parse(text)[0]
    objects, events = realise(rng, comp)
    split = "heldout" if is_held_out(comp) else "train"
    return render(Scene(comp, text, split, objects, events))  # type: ignore[return-value]


def object_masks(obj: ObjectTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every frame of ``obj`` -> canvas indices ``(frame, row, col)`` of its pixels.

    Each frame tests the pixel centres (i + 0.5, as `world.shape_mask` does) of a window around
    the object with `world.shape_test`, all frames in one array: the same arithmetic per pixel,
    so an unrotated object is exactly `world.shape_mask`'s.
    """
    side = obj.side.max()
    turned = bool((obj.angle != 0).any())
    gx, gy = obj.centroid()
    if turned:  # a turning shape stays within 0.75 side of its centroid
        r0, c0 = np.floor(gy - 0.75 * side) - 1, np.floor(gx - 0.75 * side) - 1
    else:
        r0, c0 = np.floor(obj.y) - 1, np.floor(obj.x) - 1
    span = int(np.ceil(1.5 * side if turned else side)) + 3
    rows = r0[:, None, None] + np.arange(span)[None, :, None]  # (T, span, 1)
    cols = c0[:, None, None] + np.arange(span)[None, None, :]  # (T, 1, span)
    cx, cy = cols + 0.5, rows + 0.5
    x, y, s = (a[:, None, None] for a in (obj.x, obj.y, obj.side))
    if turned:
        # Test each pixel centre turned back by the object's angle about its centroid.
        rad = np.radians(obj.angle)[:, None, None]
        dx, dy = cx - gx[:, None, None], cy - gy[:, None, None]
        cx = gx[:, None, None] + np.cos(rad) * dx + np.sin(rad) * dy
        cy = gy[:, None, None] - np.sin(rad) * dx + np.cos(rad) * dy
    else:
        cx, cy = np.broadcast_to(cx, (T, span, span)), np.broadcast_to(cy, (T, span, span))
    k, i, j = np.nonzero(world.shape_test(obj.shape, cx, cy, x, y, s))
    r, c = (r0[k] + i).astype(np.intp), (c0[k] + j).astype(np.intp)
    inside = (r >= 0) & (r < SIZE) & (c >= 0) & (c < SIZE)
    return k[inside], r[inside], c[inside]


def render(scene: Scene, visibility: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Render -> uint8 `(T, SIZE, SIZE, 3)` RGB, objects drawn back to front.

    With ``visibility``, also `(num objects, T)` float: the share of each object's pixels that
    no object in front of it covers (0 where it has no pixels at all).
    """
    frames = np.zeros((T, SIZE, SIZE, 3), np.uint8)
    order = sorted(range(len(scene.objects)), key=lambda i: scene.objects[i].depth)
    owner = np.full((T, SIZE, SIZE), -1, np.int8) if visibility else None
    area = np.zeros((len(scene.objects), T))
    for i in order:
        obj = scene.objects[i]
        k, r, c = object_masks(obj)
        if len(set(obj.color)) == 1:
            frames[k, r, c] = COLORS[obj.color[0]]
        else:
            frames[k, r, c] = np.array([COLORS[name] for name in obj.color], np.uint8)[k]
        if owner is not None:
            owner[k, r, c] = i
            area[i] = np.bincount(k, minlength=T)
    if owner is None:
        return frames
    shown = np.stack([(owner == i).sum(axis=(1, 2)) for i in range(len(scene.objects))])
    return frames, np.divide(shown, area, out=np.zeros_like(area), where=area > 0)


# ---- truth as data, datasets --------------------------------------------------------------------


def occlusion_events(visible: np.ndarray) -> list[dict]:
    """One event per object whose visible share drops below 1: first and last such frame, the
    share at its lowest, and whether it disappears completely."""
    events = []
    for i, share in enumerate(visible):
        hidden = np.flatnonzero(share < 1)
        if len(hidden):
            events.append(
                {"type": "occlusion", "frame": int(hidden[0]), "end": int(hidden[-1]), "object": i,
                 "min_visible": round(float(share.min()), 3), "vanishes": bool((share == 0).any())}
            )  # fmt: skip
    return events


def truth_record(scene: Scene, visible: np.ndarray) -> dict:
    """The clip's ground truth as JSON-ready data (per object per frame, events with frames)."""

    def floats(a: np.ndarray) -> list[float]:
        return [round(float(v), 3) for v in a]

    objects = []
    for i, obj in enumerate(scene.objects):
        gx, gy = obj.centroid()
        objects.append(
            {"shape": obj.shape, "color": list(obj.color), "x": floats(obj.x), "y": floats(obj.y),
             "side": floats(obj.side), "angle": floats(obj.angle), "centroid_x": floats(gx),
             "centroid_y": floats(gy), "depth": obj.depth, "visible": floats(visible[i])}
        )  # fmt: skip
    return {
        "caption": scene.caption,
        "category": scene.composition.category,
        "split": scene.split,
        "composition": composition_record(scene.composition),
        "objects": objects,
        "events": scene.events + occlusion_events(visible),
    }


def composition_record(comp: Composition) -> dict:
    """A composition as JSON-ready data."""
    return {
        "category": comp.category,
        "things": [t._asdict() for t in comp.things],
        "words": list(comp.words),
    }


class _Job(NamedTuple):
    seed: int
    index: int
    category: Category
    split: Split
    path: str
    crf: int
    spatial_centre: float | None = None


def _scene_of(job: _Job) -> Scene:
    rng = world.clip_rng(job.seed, job.index)
    return sample_scene(rng, job.category, job.split, spatial_centre=job.spatial_centre)


def _write(job: _Job) -> dict:
    """Worker: sample, render and write one clip (kept when a valid file is there) -> its truth."""
    scene = _scene_of(job)
    frames, visible = render(scene, visibility=True)
    if not world._clip_is_valid(Path(job.path)):
        write_video(job.path, frames, fps=FPS, crf=job.crf)
    return truth_record(scene, visible)


def generate_scenes(
    out_dir: str | os.PathLike,
    num: int,
    categories: tuple[Category, ...] = CATEGORIES,
    seed: int = 0,
    split: Split = "train",
    crf: int = 12,
    workers: int = 1,
    progress: bool = True,
    spatial_centre: float | None = None,
) -> Path:
    """Write ``num`` clips to ``out_dir/clips/NNNNNN.mp4``, ``manifest.parquet`` and the ground
    truth ``truth.jsonl`` (one line per clip, in manifest order). ``spatial_centre``: spatial
    pairs about the frame's centre (see `_spatial`).

    Clip i has category ``categories[i % len(categories)]`` and depends on ``(seed, i)`` only, so
    any worker count gives the same dataset; valid clips already on disk are kept (resumable). A
    single-category ``("single",)`` dataset is `world.generate_dataset`'s clips and captions.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if spatial_centre is not None and not 0 <= spatial_centre <= 16:
        raise ValueError(f"spatial_centre must be in [0, 16] px, got {spatial_centre}")
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown or not categories:
        raise ValueError(f"unknown categories {unknown}; expected some of {CATEGORIES}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    _check_drawn_alike(out, {"seed": seed, "split": split, "categories": list(categories), "spatial_centre": spatial_centre})  # fmt: skip
    jobs = [
        _Job(
            seed,
            i,
            categories[i % len(categories)],
            split,
            str(out / f"clips/{i:06d}.mp4"),
            crf,
            spatial_centre,
        )  # fmt: skip
        for i in range(num)
    ]
    bar = tqdm(total=num, desc="scenes clips", unit="clip", disable=not progress)
    truths = []
    if workers <= 1:
        for job in jobs:
            truths.append(_write(job))
            bar.update()
    else:
        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for truth in pool.map(_write, jobs, chunksize=16):
                truths.append(truth)
                bar.update()
    bar.close()
    rows = [_manifest_row(job, truth) for job, truth in zip(jobs, truths)]
    write_text_atomic(out / "truth.jsonl", "".join(json.dumps(t) + "\n" for t in truths))
    with atomic_path(out / "manifest.parquet") as tmp:  # readers never see half a manifest
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    return out


def _check_drawn_alike(out: Path, params: dict) -> None:
    """Record how ``out``'s clips are drawn (``generation.json``); refuse to resume a folder whose
    clips on disk were drawn otherwise: they would be kept beside a ground truth of other clips."""
    path = out / "generation.json"
    if path.is_file():
        before = json.loads(path.read_text())
        changed = sorted(k for k in params if before.get(k) != params[k])
        if changed:
            raise ValueError(
                f"{out} holds clips drawn with {', '.join(f'{k}={before.get(k)!r}' for k in changed)}, "
                f"not {', '.join(f'{k}={params[k]!r}' for k in changed)} ({path}); write to another folder"
            )
    write_text_atomic(path, json.dumps(params))


def _manifest_row(job: _Job, truth: dict) -> dict[str, object]:
    """One manifest row: DESIGN.md section 2 columns plus the composition and events as JSON."""
    return {
        "path": f"clips/{job.index:06d}.mp4",
        "text": truth["caption"],
        "category": truth["category"],
        "split": truth["split"],
        "composition": json.dumps(truth["composition"]),
        "num_objects": len(truth["objects"]),
        "events": json.dumps(truth["events"]),
        "num_frames": T,
        "fps": float(FPS),
        "height": SIZE,
        "width": SIZE,
        "source": "scenes",
        "source_id": f"scenes-s{job.seed}-{job.index:06d}",
    }


# ---- the benchmark suite ------------------------------------------------------------------------


class SuitePrompt(NamedTuple):
    """One benchmark prompt: its category, group, composition and text."""

    category: Category
    group: Literal["trained", "heldout_composition", "heldout_phrasing"]
    composition: Composition
    text: str


SUITE_TRAINED = 32  # trained compositions per category (canonical phrasing)
SUITE_PHRASINGS = 16  # of those, rephrased with held-out templates


def suite(categories: tuple[Category, ...] = CATEGORIES) -> list[SuitePrompt]:
    """The fixed benchmark prompts: per category 32 trained compositions in the canonical
    phrasing, every held-out composition (16; single has DESIGN.md's 8), and the first 16 trained
    compositions in the held-out templates, in turn.

    Single's trained compositions start with `world.EVAL_TRAIN` (today's eval prompts). The rest
    are drawn once from ``default_rng([2024, category index])``; a test pins the result.
    """
    out = []
    for cat in categories:
        rng = np.random.default_rng([2024, CATEGORIES.index(cat)])
        trained: list[Composition] = []
        if cat == "single":
            trained = [Composition("single", (Thing(c, s),), (d,)) for c, s, d in world.EVAL_TRAIN]
        while len(trained) < SUITE_TRAINED:
            comp = composition_for(rng, cat, "train")
            if key(comp) not in {key(t) for t in trained}:
                trained.append(comp)
        out += [SuitePrompt(cat, "trained", comp, canonical_caption(comp)) for comp in trained]
        out += [SuitePrompt(cat, "heldout_composition", comp, canonical_caption(comp)) for comp in held_out()[cat]]  # fmt: skip
        out += [
            SuitePrompt(cat, "heldout_phrasing", comp, canonical_caption(comp, "heldout", i))
            for i, comp in enumerate(trained[:SUITE_PHRASINGS])
        ]
    return out
