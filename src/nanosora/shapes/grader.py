"""Grade a video against a scenes prompt: find, track and read every object, then apply the
category's rule (docs/scenes.md states every threshold and why).

1. detect (per frame): the max-channel image, 3x3 median, threshold halfway between background
   and peak (as `probe`); each 8-connected component of at least `MIN_AREA` px is one object,
   unless two or more palette colours (nearest in CIELAB, per pixel) each cover a region of it
   (objects in contact or overlapping), in which case it is split by colour. Each object is
   read: colour (the majority over its eroded interior), shape (triangle by the taper of an
   apex-up triangle or by the fill of its minimum-area rectangle, 1/2 at any angle; else square
   or circle by area over the squared longest chord, 1/2 or pi/4 at any angle), side (root of
   the minimum-area rectangle's area);
2. track: frame by frame, each detection joins the track whose predicted position (constant
   velocity) is nearest, a change of colour or shape costing extra; a track not seen for some
   frames (behind another object) keeps its prediction, with a gate that widens with the gap;
3. read tracks: majority colour and shape and median side over the frames where the object
   stood clear of others; centroid per frame;
4. grade: the category's rule on the tracks of the named objects; a failure says why, and
   names its kind (`FAILURE_KINDS`) so a benchmark can count what a model gets wrong.

Single clips are graded with `probe.probe_frames`, today's rule, unchanged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from itertools import groupby

import cv2
import numpy as np

from nanosora.shapes.grammar import Composition, Thing, parse
from nanosora.shapes.probe import (
    MIN_CONTRAST,
    TAPER_TRIANGLE,
    ProbeResult,
    _direction_name,
    probe_frames,
)
from nanosora.shapes.world import COLORS

MIN_AREA = 12  # px: smaller components are noise (the smallest object, 9 px, covers 40+)
MIN_CORE = 6  # px of one colour left after erosion: a second object inside a component
FILL_TRIANGLE = 0.72  # minimum-area-rectangle fill: triangles 0.55-0.68 on mp4, circles 0.77+
# Area over the squared longest chord (Feret diameter): pi/4 for a circle, 1/2 for a square at
# any angle; on mp4 at 12-16 px circles read 0.68-0.73 and squares 0.52-0.61.
FERET_SQUARE = 0.64
SIZE_SPLIT = 14.0  # px: "small" objects measure 9-11, "big" 17-21
COLOR_COST, SHAPE_COST = 6.0, 3.0  # px a colour or shape change costs when joining a track
GATE, GATE_PER_FRAME = 12.0, 4.0  # px a detection may be from a track's prediction (+ per gap)
MIN_TRACK = 3  # frames: shorter tracks are flicker
BLEND_FRAMES = 2  # frames between a colour change's two colours that may read as neither
SPIN_DEGREES = 90  # a spin turns this far one way (the world's spins: 190-380 degrees)
_PALETTE = list(COLORS)

# What a failed verdict got wrong, one kind each (the first thing the category's rule found wrong).
FAILURE_KINDS = (
    "missing",  # a named object is not there, nor one of its colour or its shape
    "wrong colour",  # an object of the named shape (and size) stands there in another colour
    "wrong shape",  # an object of the named colour stands there as another shape
    "wrong size",  # the named colour and shape at the other size
    "merged",  # the named object is only seen fused with another (one blob)
    "extra",  # objects the prompt does not name
    "count",  # the wrong number of the named object
    "reversed",  # the opposite direction, relation, size change or colour order
    "wrong direction",  # a direction or relation other than the asked one or its opposite
    "still",  # no motion where a direction is asked
    "unchanged",  # the colour or size does not change (or by less than the rule asks)
    "wrong change",  # another change than the asked one (another colour, a change where none)
    "incomplete",  # an action or interaction not carried through (bounce, spin, jump, push, pass)
    "inconsistent",  # an object comes out of an interaction as another colour, shape or size
    "unreadable",  # the video could not be decoded
)
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "above": "below", "below": "above"}  # fmt: skip


def _palette_lut() -> np.ndarray:
    """Nearest palette index (CIELAB) of every colour on a 5-bit-per-channel grid: (32, 32, 32)."""
    grid = (np.stack(np.meshgrid(*[np.arange(32)] * 3, indexing="ij"), -1) * 8 + 4).reshape(-1, 3)
    lab = cv2.cvtColor(grid[None].astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[0]
    rgb = np.array([COLORS[n] for n in _PALETTE], np.float32)[None] / 255.0
    pal = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)[0]
    return np.linalg.norm(lab[:, None] - pal[None], axis=2).argmin(1).astype(np.uint8).reshape(32, 32, 32)  # fmt: skip


_LUT = _palette_lut()
_KERNEL = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Detection:
    """One object in one frame."""

    frame: int
    color: str
    shape: str
    side: float  # px, root of the minimum-area rectangle's area
    area: int  # px
    centroid: tuple[float, float]  # (x, y)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive)
    mask: np.ndarray = field(repr=False)  # (h, w) bool inside box
    touching: bool = False  # its component holds another object too


def _pixel_labels(rgb: np.ndarray) -> np.ndarray:
    """Nearest palette index of each `(..., 3)` uint8 pixel."""
    q = rgb >> 3
    return _LUT[q[..., 0], q[..., 1], q[..., 2]]


def _classify(mask: np.ndarray, area: float) -> tuple[str, float]:
    """(shape, side) of a boolean object mask (module docstring, step 1)."""
    hull = cv2.convexHull(cv2.findNonZero(mask.view(np.uint8)))
    (_, (w, h), _) = cv2.minAreaRect(hull)
    rect = (w + 1) * (h + 1)  # pixel centres span one pixel less than the pixels do
    # Taper as `probe._taper`: mean width of the top quarter of rows over the bottom quarter's.
    band = max(1, mask.shape[0] // 4)
    rows = np.cumsum(mask.sum(axis=1))
    top, bottom = rows[band - 1] / band, (rows[-1] - (rows[-band - 1] if band < len(rows) else 0)) / band  # fmt: skip
    if top / max(bottom, 1.0) < TAPER_TRIANGLE or area / rect < FILL_TRIANGLE:
        return "triangle", float(np.sqrt(rect))
    corners = hull.reshape(-1, 2).astype(np.float64)
    diameter = np.sqrt(((corners[:, None] - corners[None]) ** 2).sum(-1).max()) + 1
    shape = "square" if area / diameter**2 < FERET_SQUARE else "circle"
    return shape, float(np.sqrt(rect))


def _detection(t: int, mask: np.ndarray, x: int, y: int, color: str, touching: bool) -> Detection | None:  # fmt: skip
    """A Detection from an object mask cropped at (x, y) of frame ``t``."""
    m = cv2.moments(mask.view(np.uint8), binaryImage=True)
    area = m["m00"]
    if area < MIN_AREA:
        return None
    shape, side = _classify(mask, area)
    centroid = (m["m10"] / area + x + 0.5, m["m01"] / area + y + 0.5)
    box = (x, y, x + mask.shape[1], y + mask.shape[0])
    return Detection(t, color, shape, side, int(area), centroid, box, mask, touching)


def detect(frames: np.ndarray) -> list[list[Detection]]:
    """Every object in every frame of uint8 `(T, H, W, 3)` RGB frames.

    The frames are stacked into one tall image, each padded by its own edge pixels for the
    median (as a per-frame median with replicated borders) and kept apart by an empty row for
    the connected components, so a clip costs one call of each.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    T, H, W, _ = frames.shape
    # 1. foreground: max channel, 3x3 median, threshold halfway between background and peak
    brightest = np.maximum(
        np.maximum(frames[..., 0], frames[..., 1]), frames[..., 2]
    )  # max(axis=3), 20x faster
    padded = np.pad(brightest, ((0, 0), (1, 1), (1, 1)), mode="edge")
    value = cv2.medianBlur(padded.reshape(T * (H + 2), W + 2), 3).reshape(T, H + 2, W + 2)
    value = value[:, 1:-1, 1:-1]
    flat = value.reshape(T, -1)
    background, peak = np.median(flat, axis=1), np.percentile(flat, 99.7, axis=1)
    fg = (value > ((background + peak) / 2)[:, None, None]) & (peak - background >= MIN_CONTRAST)[:, None, None]  # fmt: skip
    # 2. components of every frame at once, and the palette colours of their eroded interiors
    tall = np.zeros((T, H + 1, W), np.uint8)
    tall[:, :H] = fg
    tall = tall.reshape(T * (H + 1), W)
    n, comp_of, stats, _ = cv2.connectedComponentsWithStats(tall, connectivity=8)
    pixel = np.zeros((T, H + 1, W), np.uint8)
    pixel[:, :H][fg] = _pixel_labels(frames[fg])
    pixel = pixel.reshape(T * (H + 1), W)
    inner = cv2.erode(tall, _KERNEL).astype(bool)
    counts = np.bincount(comp_of[inner] * len(_PALETTE) + pixel[inner], minlength=n * len(_PALETTE))
    counts = counts.reshape(n, len(_PALETTE))
    several = (counts >= MIN_CORE).sum(axis=1) > 1
    empty = counts.max(axis=1) == 0
    majority = counts.argmax(axis=1)
    out: list[list[Detection]] = [[] for _ in range(T)]
    for i in 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_AREA):
        x, y, w, h, _ = (int(v) for v in stats[i])
        t, top = divmod(y, H + 1)
        comp = comp_of[y : y + h, x : x + w] == i
        labels = pixel[y : y + h, x : x + w]
        if several[i]:
            out[t] += _split(t, comp, labels, x, top)
            continue
        # One colour: the majority over its interior (over all its pixels if it has none).
        color = int(np.bincount(labels[comp]).argmax()) if empty[i] else int(majority[i])
        det = _detection(t, comp, x, top, _PALETTE[color], False)
        if det:
            out[t].append(det)
    return out


def _split(t: int, comp: np.ndarray, pixel: np.ndarray, x: int, y: int) -> list[Detection]:
    """A component whose interior holds several palette colours -> one detection per colour
    that covers a region of its own (at least `MIN_CORE` px left after a 3x3 erosion: the thin
    seam of mixed colours where two objects meet does not count); a single one if only one does.
    """
    parts = {}
    for label in np.unique(pixel[comp]):
        part = (comp & (pixel == label)).astype(np.uint8)
        if cv2.erode(part, _KERNEL).sum() >= MIN_CORE:
            parts[int(label)] = part
    if len(parts) <= 1:
        color = int(np.bincount(pixel[comp]).argmax()) if not parts else next(iter(parts))
        det = _detection(t, comp, x, y, _PALETTE[color], False)
        return [det] if det else []
    # Pixels of no part's colour (the seams) go to the nearest part.
    labels_ = list(parts)
    dist = np.stack([cv2.distanceTransform(1 - parts[lb], cv2.DIST_L2, 3) for lb in labels_])
    nearest = dist.argmin(axis=0)
    loose = comp & ~np.any([parts[lb].astype(bool) for lb in labels_], axis=0)
    for i, lb in enumerate(labels_):
        parts[lb] = parts[lb] | (loose & (nearest == i)).astype(np.uint8)
    dets = []
    for label, part in parts.items():
        # An object in front can cut one behind it in two: keep every piece but seam crumbs.
        n, labels, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
        keep = 1 + np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= MIN_CORE)
        whole = np.isin(labels, keep)
        ys, xs = np.nonzero(whole)
        px, py = int(xs.min()), int(ys.min())
        mask = whole[py : int(ys.max()) + 1, px : int(xs.max()) + 1]
        det = _detection(t, mask, x + px, y + py, _PALETTE[label], True)
        if det:
            dets.append(det)
    return dets


# ---- tracking ---------------------------------------------------------------------------------


@dataclass
class Track:
    """One object followed through the clip: its detections by frame, and readings over them."""

    detections: dict[int, Detection] = field(default_factory=dict)

    def predict(self, t: int) -> np.ndarray:
        """Expected centroid at frame ``t``: constant velocity from the last two sightings."""
        seen = sorted(self.detections)
        last = np.array(self.detections[seen[-1]].centroid)
        if len(seen) < 2:
            return last
        prev = np.array(self.detections[seen[-2]].centroid)
        return last + (last - prev) / (seen[-1] - seen[-2]) * (t - seen[-1])

    def clear(self) -> list[Detection]:
        """Detections standing clear of other objects (all of them if none does)."""
        dets = [d for d in self.detections.values() if not d.touching]
        return dets or list(self.detections.values())

    @property
    def color(self) -> str:
        return Counter(d.color for d in self.clear()).most_common(1)[0][0]

    @property
    def shape(self) -> str:
        return Counter(d.shape for d in self.clear()).most_common(1)[0][0]

    @property
    def side(self) -> float:
        return float(np.median([d.side for d in self.clear()]))

    @property
    def size(self) -> str:
        return "small" if self.side < SIZE_SPLIT else "big"

    @property
    def apart(self) -> bool:
        """True if the object stands clear of others in more than half its sightings (a blob
        of two colours reads as two objects, always touching)."""
        return 2 * sum(not d.touching for d in self.detections.values()) > len(self.detections)

    def centroids(self, num_frames: int) -> np.ndarray:
        """(T, 2) centroid per frame, NaN where not seen."""
        out = np.full((num_frames, 2), np.nan)
        for t, d in self.detections.items():
            out[t] = d.centroid
        return out

    def describe(self, size: bool = False) -> str:
        return f"{self.size + ' ' if size else ''}{self.color} {self.shape}"


def track(detections: list[list[Detection]]) -> list[Track]:
    """Link detections frame by frame into tracks (module docstring, step 2); drops flicker."""
    tracks: list[Track] = []
    for t, dets in enumerate(detections):
        pairs = []
        for ti, tr in enumerate(tracks):
            last = max(tr.detections)
            ref = tr.detections[last]
            pred = tr.predict(t)
            for di, d in enumerate(dets):
                dist = float(np.hypot(*(np.array(d.centroid) - pred)))
                if dist <= GATE + GATE_PER_FRAME * (t - last - 1):
                    cost = dist + COLOR_COST * (d.color != ref.color) + SHAPE_COST * (d.shape != ref.shape)  # fmt: skip
                    pairs.append((cost, ti, di))
        used_t, used_d = set(), set()
        for _, ti, di in sorted(pairs):  # greedy: the cheapest links first
            if ti not in used_t and di not in used_d:
                tracks[ti].detections[t] = dets[di]
                used_t.add(ti)
                used_d.add(di)
        tracks += [Track({t: d}) for di, d in enumerate(dets) if di not in used_d]
    return [tr for tr in tracks if len(tr.detections) >= MIN_TRACK]


# ---- grading ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a video shows what its prompt says, why not, and what the grader saw."""

    passed: bool
    reason: str  # "" when passed
    seen: str  # the objects read, in words
    kind: str = ""  # one of FAILURE_KINDS; "" when passed


def _seen(tracks: list[Track], size: bool = False) -> str:
    return ", ".join(tr.describe(size) for tr in tracks) or "nothing"


def _find(
    tracks: list[Track], thing: Thing, taken: list[Track] | None = None, apart: bool = True
) -> Track | None:
    """The longest track reading as ``thing`` (colour, shape, and size if named), not taken,
    and (unless the category is about contact) standing apart from other objects."""
    taken = taken or []
    fits = [
        tr for tr in tracks
        if tr.color == thing.color and tr.shape == thing.shape and (tr.apart or not apart)
        and (not thing.size or tr.size == thing.size) and all(tr is not o for o in taken)
    ]  # fmt: skip
    return max(fits, key=lambda tr: len(tr.detections), default=None)


def _absent(
    tracks: list[Track],
    thing: Thing,
    found: list[Track],
    size: bool = False,
    apart: bool = True,
    others: list[Track] | None = None,
) -> tuple[str, str]:
    """Why ``thing`` was not found among the tracks not ``found`` for earlier things, and the
    kind: only as part of a blob, or a `_lookalike` among the tracks that neither ``found`` nor
    ``others`` (the later things' tracks) account for."""
    if apart and _find(tracks, thing, found, apart=False) is not None:
        return f"the {_thing(thing)} never stands apart from another object (one blob?)", "merged"
    reason = f"no {_thing(thing)} (saw {_seen(tracks, size)})"
    return reason, _lookalike(tracks, thing, found + (others or []))


def _lookalike(tracks: list[Track], thing: Thing, taken: list[Track]) -> str:
    """The failure kind of a missing ``thing``, from what stands in its place among the tracks
    not ``taken``: the same colour and shape at the other size (if a size is named), the same
    colour, the same shape turning from or to its colour, the same shape, or nothing like it."""
    free = [tr for tr in tracks if all(tr is not t for t in taken)]
    if thing.size and any((tr.color, tr.shape) == (thing.color, thing.shape) for tr in free):
        return "wrong size"
    if any(tr.color == thing.color for tr in free):
        return "wrong shape"
    shaped = [tr for tr in free if tr.shape == thing.shape]
    runs = [_runs([tr.detections[t].color for t in sorted(tr.detections)]) for tr in shaped]
    if any(len(r) > 1 and thing.color in r for r in runs):
        return "wrong change"
    return "wrong colour" if shaped else "missing"


def _not_found(tracks: list[Track], thing: Thing, seen: str) -> Verdict:
    """The failed verdict of a clip without ``thing``."""
    reason, kind = _absent(tracks, thing, [])
    return Verdict(False, reason, seen, kind)


def _direction_kind(got: str | None, want: str) -> str:
    """The failure kind of a direction or relation ``got`` (None: still) for ``want``."""
    if got is None:
        return "still"
    return "reversed" if OPPOSITE.get(want) == got else "wrong direction"


def _thing(thing: Thing) -> str:
    return f"{thing.size + ' ' if thing.size else ''}{thing.color} {thing.shape}"


def _direction(points: np.ndarray) -> tuple[str | None, np.ndarray]:
    """Direction name (None: still) and (dx, dy) over the clip from a least-squares line."""
    ok = ~np.isnan(points[:, 0])
    t = np.flatnonzero(ok)
    if len(t) < 2:
        return None, np.zeros(2)
    slope = np.polyfit(t.astype(np.float64), points[ok], deg=1)[0] * (len(points) - 1)
    return _direction_name(float(slope[0]), float(slope[1])), slope


@dataclass
class Reading:
    """What the grader read from one clip, graded against any number of compositions."""

    frames: np.ndarray
    tracks: list[Track]

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @cached_property
    def probe(self) -> ProbeResult:
        """The one-object probe's reading (single clips)."""
        return probe_frames(self.frames)


def read(frames: np.ndarray) -> Reading:
    """Detect and track every object in uint8 `(T, H, W, 3)` RGB frames."""
    return Reading(frames, track(detect(frames)))


def judge(reading: Reading, comp: Composition) -> Verdict:
    """Grade a reading against a composition (the module docstring's rules)."""
    tracks, T = reading.tracks, reading.num_frames
    match comp.category:
        case "single":
            return _grade_single(reading.probe, comp)
        case "attributes":
            return _grade_attributes(tracks, comp, T)
        case "numeracy":
            return _grade_numeracy(tracks, comp, T)
        case "spatial":
            return _grade_spatial(tracks, comp, T)
        case "motion":
            return _grade_motion(tracks, comp, T)
        case "dynamic":
            return _grade_dynamic(tracks, comp, T)
        case "actions":
            return _grade_actions(tracks, comp, reading.frames.shape[1:3])
        case "interactions":
            return _grade_interactions(tracks, comp, T)
    raise ValueError(f"unknown category {comp.category!r}")


def grade(frames: np.ndarray, comp: Composition) -> Verdict:
    """Grade uint8 `(T, H, W, 3)` RGB frames against a composition."""
    if comp.category == "single":  # today's probe; no need to track
        return _grade_single(probe_frames(frames), comp)
    return judge(read(frames), comp)


def grade_prompt(frames: np.ndarray, prompt: str) -> Verdict:
    """Parse ``prompt`` with the scenes grammar and `grade` the frames against it."""
    return grade(frames, parse(prompt)[0])


def _grade_single(r: ProbeResult, comp: Composition) -> Verdict:
    want = (comp.things[0].color, comp.things[0].shape, comp.words[0])
    got = (r.color, r.shape, r.direction)
    names = ("colour", "shape", "direction")
    wrong = [f"{n} {g}, expected {w}" for n, g, w in zip(names, got, want) if g != w]
    seen = f"{r.color} {r.shape} moving {r.direction}" if r.found_frames else "nothing"
    if not wrong:
        return Verdict(True, "", seen)
    if not r.found_frames:
        kind = "missing"
    elif r.color != want[0]:
        kind = "wrong colour"
    elif r.shape != want[1]:
        kind = "wrong shape"
    else:
        kind = _direction_kind(r.direction, want[2])
    return Verdict(False, "; ".join(wrong), seen, kind)


def _missing(
    tracks: list[Track], things: tuple[Thing, ...], size: bool = False, apart: bool = True
) -> tuple[list[Track], str, str]:
    """The track of each thing in turn, or a reason naming the first one missing and its kind
    (judged among the tracks that the other things do not account for)."""
    found: list[Track] = []
    for i, thing in enumerate(things):
        tr = _find(tracks, thing, found, apart)
        if tr is None:
            others: list[Track] = []
            for other in things[i + 1 :]:
                if (o := _find(tracks, other, found + others, apart)) is not None:
                    others.append(o)
            return found, *_absent(tracks, thing, found, size, apart, others)
        found.append(tr)
    return found, "", ""


def _grade_attributes(tracks: list[Track], comp: Composition, T: int) -> Verdict:
    """Each named object with its colour, shape and size; nothing else for most of the clip."""
    objects = [tr for tr in tracks if len(tr.detections) > T / 2]
    seen = _seen(objects, size=True)
    found, reason, kind = _missing(objects, comp.things, size=True)
    if reason:
        return Verdict(False, reason, seen, kind)
    extra = [tr for tr in objects if all(tr is not f for f in found)]
    if extra:
        return Verdict(False, f"unnamed {_seen(extra, size=True)}", seen, "extra")
    return Verdict(True, "", seen)


def _grade_numeracy(tracks: list[Track], comp: Composition, T: int) -> Verdict:
    """The number of objects reading as the named colour and shape, in most frames."""
    thing, want = comp.things[0], len(comp.things)
    kind = [tr for tr in tracks if (tr.color, tr.shape) == (thing.color, thing.shape)]
    counts = Counter(sum(t in tr.detections for tr in kind) for t in range(T))
    count, frames = counts.most_common(1)[0]
    seen = _seen(tracks)
    if counts[want] > T / 2:
        return Verdict(True, "", seen)
    kind = "count" if count else _lookalike(tracks, thing, [])
    return Verdict(False, f"count {count} in {frames}/{T} frames, expected {want}", seen, kind)


def _relation(a: np.ndarray, b: np.ndarray) -> str:
    """Where centroid a is relative to b: the dominant axis of a - b."""
    dx, dy = a - b
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _grade_spatial(tracks: list[Track], comp: Composition, T: int) -> Verdict:
    """Both objects found; the relation of their centroids holds in most frames."""
    seen = _seen(tracks)
    found, reason, kind = _missing(tracks, comp.things)
    if reason:
        return Verdict(False, reason, seen, kind)
    ta, tb = found
    pa, pb = ta.centroids(T), tb.centroids(T)
    both = ~np.isnan(pa[:, 0]) & ~np.isnan(pb[:, 0])
    relations = Counter(_relation(pa[t], pb[t]) for t in np.flatnonzero(both))
    want = comp.words[0]
    if relations[want] > T / 2:
        return Verdict(True, "", seen)
    got, n = relations.most_common(1)[0] if relations else ("none", 0)
    words = {"left": "left of", "right": "right of", "above": "above", "below": "below", "none": "nowhere near"}  # fmt: skip
    kind = _direction_kind(got, want) if got != "none" else "wrong direction"
    return Verdict(False, f"the {_thing(comp.things[0])} is {words[got]} the {_thing(comp.things[1])} in {n}/{T} frames, expected {words[want]}", seen, kind)  # fmt: skip


def _grade_motion(tracks: list[Track], comp: Composition, T: int) -> Verdict:
    """Each object's own direction (least-squares centroid line, as `probe`)."""
    seen = _seen(tracks)
    found, reason, kind = _missing(tracks, comp.things)
    if reason:
        return Verdict(False, reason, seen, kind)
    wrong, kinds = [], []
    for thing, tr, want in zip(comp.things, found, comp.words):
        got, _ = _direction(tr.centroids(T))
        if got != want:
            wrong.append(f"{_thing(thing)} moves {got or 'nowhere'}, expected {want}")
            kinds.append(_direction_kind(got, want))
    return Verdict(not wrong, "; ".join(wrong), seen, kinds[0] if kinds else "")


def _runs(colors: list[str]) -> list[str]:
    """A per-frame colour sequence as its runs, single-frame blips dropped."""
    runs: list[list] = []
    for c in colors:
        if runs and runs[-1][0] == c:
            runs[-1][1] += 1
        else:
            runs.append([c, 1])
    out: list[str] = []
    for c, n in runs:
        if n >= 2 and (not out or out[-1] != c):
            out.append(c)
    return out


def _trend(values: list[float]) -> float:
    """Rank correlation of ``values`` with time: 1 rising throughout, -1 falling."""
    if len(values) < 3:
        return 0.0
    ranks = np.argsort(np.argsort(values)).astype(np.float64)
    return float(np.corrcoef(np.arange(len(values)), ranks)[0, 1])


def _chains(tracks: list[Track]) -> list[Track]:
    """``tracks`` with each track that starts within a frame of another's end, where that one
    ended, joined to it: a colour change whose in-between frame blends both colours is read as
    two colours for a frame, which ends one track and starts another."""
    chains: list[Track] = []
    for tr in sorted(tracks, key=lambda tr: min(tr.detections)):
        first = min(tr.detections)
        for ch in chains:
            last = max(ch.detections)
            gap = np.hypot(*np.subtract(tr.detections[first].centroid, ch.detections[last].centroid))  # fmt: skip
            if first - 1 <= last <= first and gap <= GATE:
                ch.detections.update({t: d for t, d in tr.detections.items() if t > last})
                break
        else:
            chains.append(Track(dict(tr.detections)))
    return chains


def _blended(colors: list[str], want: list[str]) -> bool:
    """Start and end runs of 3+ frames with at most BLEND_FRAMES frames of other colours between
    them (the blend of a change)."""
    lengths = [(c, len(list(g))) for c, g in groupby(colors)]
    if len(lengths) < 3 or (lengths[0][0], lengths[-1][0]) != tuple(want):
        return False
    between = sum(n for _, n in lengths[1:-1])
    return lengths[0][1] >= 3 and lengths[-1][1] >= 3 and between <= BLEND_FRAMES


def _grade_dynamic(tracks: list[Track], comp: Composition, T: int) -> Verdict:
    """turns: colour runs are (start, end), a blend of up to BLEND_FRAMES frames between them
    allowed; grows/shrinks: the side changes by 1.4x or more that way, rising or falling steadily
    (rank correlation >= 0.7), colour unchanged."""
    thing, seen = comp.things[0], _seen(tracks)
    if comp.words[0] == "turns":
        want = [thing.color, comp.words[1]]
        shaped = [tr for tr in _chains(tracks) if tr.shape == thing.shape and tr.apart]
        if not shaped:
            if any(tr.shape == thing.shape for tr in tracks):
                reason = f"the {thing.shape} never stands apart from another object (one blob?)"
                return Verdict(False, reason, seen, "merged")
            kind = "wrong shape" if tracks else "missing"  # the shape is all a turn names
            return Verdict(False, f"no {thing.shape} (saw {seen})", seen, kind)
        colors = [[tr.detections[t].color for t in sorted(tr.detections)] for tr in shaped]
        runs = [_runs(c) for c in colors]
        if want in runs or any(_blended(c, want) for c in colors):
            return Verdict(True, "", seen)
        best = next((r for r in runs if r[:1] == want[:1]), max(runs, key=len))
        if best == want[::-1] or len(best) < 2:
            kind = "reversed" if best == want[::-1] else "unchanged"
        else:  # a wrong first colour is the named object's colour; a wrong last, the change
            kind = "wrong colour" if best[0] != want[0] and best[1:] == want[1:] else "wrong change"
        return Verdict(False, f"colour {' -> '.join(best) or 'unclear'}, expected {' -> '.join(want)}", seen, kind)  # fmt: skip
    tr = _find(tracks, thing)
    if tr is None:
        return _not_found(tracks, thing, seen)
    dets = [tr.detections[t] for t in sorted(tr.detections)]
    sides = [d.side for d in dets]
    start, end = float(np.median(sides[:3])), float(np.median(sides[-3:]))
    grows = comp.words[0] == "grows"
    ratio = end / start if grows else start / end
    trend = _trend(sides) * (1 if grows else -1)
    runs = _runs([d.color for d in dets])
    if ratio >= 1.4 and trend >= 0.7 and runs == [thing.color]:
        return Verdict(True, "", seen)
    if runs != [thing.color]:
        kind = "wrong change" if len(runs) > 1 else "wrong colour"
        return Verdict(False, f"colour {' -> '.join(runs)}, expected {thing.color} throughout", seen, kind)  # fmt: skip
    kind = "reversed" if ratio <= 1 / 1.4 and trend <= -0.7 else "unchanged" if ratio < 1.4 else "wrong change"  # fmt: skip
    return Verdict(False, f"side {start:.1f} -> {end:.1f} px (trend {trend:+.2f}), expected it to {comp.words[0][:-1]}", seen, kind)  # fmt: skip


def _edge_distance(d: Detection, wall: str, size: tuple[int, int]) -> int:
    """Pixels between the detection's box and a wall of a `(H, W)` frame."""
    x0, y0, x1, y1 = d.box
    return {"left": x0, "right": size[1] - x1, "top": y0, "bottom": size[0] - y1}[wall]


def _patch(d: Detection, half: int) -> np.ndarray:
    """The object's mask as floats on a `(2 half + 1)^2` patch centred on its centroid."""
    size = 2 * half + 1
    mask = d.mask.astype(np.float32)
    # Pixel (i, j) of the mask has its centre at (box x0 + j + 0.5, box y0 + i + 0.5).
    shift = np.float32([[1, 0, d.box[0] + 0.5 - d.centroid[0] + half], [0, 1, d.box[1] + 0.5 - d.centroid[1] + half]])  # fmt: skip
    return cv2.warpAffine(mask, shift, (size, size), flags=cv2.INTER_LINEAR)


def _turns(dets: list[Detection]) -> np.ndarray:
    """Degrees the object turns between consecutive sightings: the angle (-40..40 in steps of 2,
    within a square's 90-degree symmetry) that best overlaps the earlier mask, turned about its
    centroid, with the later one; 0 unless it beats no turn by 0.02 IoU (a circle never turns)."""
    half = int(np.ceil(0.8 * max(max(d.mask.shape) for d in dets))) + 1
    patches = [_patch(d, half) for d in dets]
    angles = np.arange(-40, 41, 2)
    steps = []
    for a, b in zip(patches, patches[1:]):
        scores = []
        for angle in angles:
            turned = cv2.warpAffine(a, cv2.getRotationMatrix2D((half, half), float(angle), 1.0), a.shape[::-1], flags=cv2.INTER_LINEAR)  # fmt: skip
            scores.append(np.minimum(turned, b).sum() / max(np.maximum(turned, b).sum(), 1e-6))
        best = int(np.argmax(scores))
        steps.append(angles[best] if scores[best] - scores[len(angles) // 2] > 0.02 else 0)
    return np.array(steps, np.float64)


def _grade_actions(tracks: list[Track], comp: Composition, size: tuple[int, int]) -> Verdict:
    """bounce: reaches the wall (within 2 px) at an inner frame, 6+ px nearer before, 6+ px away
    after; spin: centroid within 3 px of its median, turning 90+ degrees in all, 60% of the
    steps that way;
    jump: rises 6+ px and comes back within 3 px, x within 3 px, never within 3 px of the top."""
    thing, action, seen = comp.things[0], comp.words[0], _seen(tracks)
    tr = _find(tracks, thing)
    if tr is None:
        return _not_found(tracks, thing, seen)
    dets = [tr.detections[t] for t in sorted(tr.detections)]
    pts = np.array([d.centroid for d in dets])
    spread = float(np.abs(pts - np.median(pts, axis=0)).max())
    if action.startswith("bounce_"):
        wall = action.removeprefix("bounce_")
        dist = np.array([_edge_distance(d, wall, size) for d in dets])
        k = int(dist.argmin())
        if dist[k] > 2:
            return Verdict(
                False, f"never reaches the {wall} wall (closest {dist[k]} px)", seen, "incomplete"
            )
        if dist[0] - dist[k] < 6 or dist[-1] - dist[k] < 6:
            return Verdict(False, f"does not come {'to' if dist[0] - dist[k] < 6 else 'back from'} the {wall} wall ({dist[0]} -> {dist[k]} -> {dist[-1]} px)", seen, "incomplete")  # fmt: skip
        return Verdict(True, "", seen)
    if action == "spin":
        if spread > 3:
            return Verdict(
                False, f"moves {spread:.0f} px, expected to spin in place", seen, "incomplete"
            )
        steps = _turns(dets)
        total = float(steps.sum())
        steady = float(np.mean(np.sign(steps) == np.sign(total))) if len(steps) else 0.0
        if abs(total) < SPIN_DEGREES or steady < 0.6:
            return Verdict(False, f"turns {total:+.0f} degrees ({steady:.0%} of steps that way), expected {SPIN_DEGREES}+ one way", seen, "incomplete")  # fmt: skip
        return Verdict(True, "", seen)
    y = pts[:, 1]
    start, end = float(np.median(y[:2])), float(np.median(y[-2:]))
    rise = start - float(y.min())
    top = min(d.box[1] for d in dets)
    drift = float(np.abs(pts[:, 0] - np.median(pts[:, 0])).max())
    if rise < 6:
        return Verdict(
            False, f"rises {rise:.0f} px, expected a jump of 6 or more", seen, "incomplete"
        )
    if abs(end - start) > 3:
        return Verdict(
            False, f"does not land where it took off ({end - start:+.0f} px)", seen, "incomplete"
        )
    if top < 3 or drift > 3:
        return Verdict(False, "touches the top wall" if top < 3 else f"drifts {drift:.0f} px sideways", seen, "incomplete")  # fmt: skip
    return Verdict(True, "", seen)


_AXIS = {"left": (0, -1), "right": (0, 1), "up": (1, -1), "down": (1, 1)}  # (axis, sign)


def _front(d: Detection, direction: str) -> float:
    """The box edge facing ``direction``, measured along it."""
    axis, sign = _AXIS[direction]
    return sign * (d.box[axis + 2] if sign > 0 else d.box[axis])


def _back(d: Detection, direction: str) -> float:
    """The box edge facing away from ``direction``, measured along it."""
    axis, sign = _AXIS[direction]
    return sign * (d.box[axis] if sign > 0 else d.box[axis + 2])


def _across_overlap(a: Detection, b: Detection, direction: str) -> bool:
    """True if the boxes overlap across ``direction`` (they could touch face to face)."""
    other = 1 - _AXIS[direction][0]
    return min(a.box[other + 2], b.box[other + 2]) > max(a.box[other], b.box[other])


def _grade_push(ta: Track, tb: Track, comp: Composition, T: int, seen: str) -> Verdict:
    """Contact (boxes within 3 px face to face, A behind B), A having come 3+ px that way and
    B still (within 3 px); after it B moves that way 5+ px, more than across."""
    (a, b), d = comp.things, comp.words[0].removeprefix("push_")
    axis, sign = _AXIS[d]
    contact = next(
        (t for t in range(T) if t in ta.detections and t in tb.detections
         and -3 <= _back(tb.detections[t], d) - _front(ta.detections[t], d) <= 3
         and _across_overlap(ta.detections[t], tb.detections[t], d)),
        None,
    )  # fmt: skip
    if contact is None:
        return Verdict(False, f"the {_thing(a)} never touches the {_thing(b)} from behind, going {d}", seen, "incomplete")  # fmt: skip
    pa, pb = ta.centroids(T), tb.centroids(T)
    first_a, first_b = min(ta.detections), min(tb.detections)
    came = sign * (pa[contact, axis] - pa[first_a, axis])
    if came < 3:
        return Verdict(False, f"the {_thing(a)} does not move {d} into the {_thing(b)} ({came:.0f} px)", seen, "incomplete")  # fmt: skip
    before = np.abs(pb[contact] - pb[first_b]).max()
    if before > 3:
        return Verdict(
            False, f"the {_thing(b)} moves {before:.0f} px before it is hit", seen, "incomplete"
        )
    last_b = max(tb.detections)
    move = pb[last_b] - pb[contact]
    along, across = sign * move[axis], abs(move[1 - axis])
    if last_b - contact < 3 or along < 5 or along <= across:
        got = _direction_name(float(move[0]), float(move[1])) or "nowhere"
        return Verdict(False, f"after contact (frame {contact}) the {_thing(b)} moves {got}, expected {d}", seen, "incomplete")  # fmt: skip
    return Verdict(True, "", seen)


def _interpolate(points: np.ndarray) -> np.ndarray:
    """Fill NaN rows between sightings linearly (a hidden object keeps moving); ends stay NaN."""
    ok = np.flatnonzero(~np.isnan(points[:, 0]))
    out = points.copy()
    inner = np.arange(ok[0], ok[-1] + 1)
    for axis in range(2):
        out[inner, axis] = np.interp(inner, ok, points[ok, axis])
    return out


def _grade_pass(ta: Track, tb: Track, comp: Composition, T: int, seen: str) -> Verdict:
    """A crosses B (its path through B's box, from one side of B to the other), moving 8+ px and
    twice as far as B; in most frames while over B, A's visible area is half its clear area or
    less (behind) or 60% or more (in front); before and after, A reads the same colour, shape
    and side (within 25%)."""
    (a, b), verb = comp.things, comp.words[0]
    pa = _interpolate(ta.centroids(T))
    # B's box where it stands clear (its box while A covers part of it is only part of it).
    b_box = {t: d.box for t, d in tb.detections.items() if not d.touching} or {
        t: d.box for t, d in tb.detections.items()
    }
    b_frames = sorted(b_box)
    over = []
    for t in range(T):
        if np.isnan(pa[t, 0]):
            continue
        x0, y0, x1, y1 = b_box[min(b_frames, key=lambda f: abs(f - t))]
        if x0 <= pa[t, 0] < x1 and y0 <= pa[t, 1] < y1:
            over.append(t)
    if not over:
        return Verdict(False, f"the {_thing(a)} never crosses the {_thing(b)}", seen, "incomplete")
    # Where A is relative to B at its first and last sighting (B where it was seen nearest then).
    pb = tb.centroids(T)
    first, last = min(ta.detections), max(ta.detections)
    b_first, b_last = (min(tb.detections, key=lambda f: abs(f - t)) for t in (first, last))
    start, end = pa[first] - pb[b_first], pa[last] - pb[b_last]
    axis = int(np.argmax(np.abs(end - start)))
    if start[axis] * end[axis] >= 0:
        return Verdict(
            False, f"the {_thing(a)} does not get past the {_thing(b)}", seen, "incomplete"
        )
    moved_a = float(np.linalg.norm(pa[last] - pa[first]))
    moved_b = float(np.linalg.norm(pb[max(tb.detections)] - pb[min(tb.detections)]))
    if moved_a < 8 or moved_a < 2 * moved_b:
        return Verdict(False, f"the {_thing(a)} moves {moved_a:.0f} px, the {_thing(b)} {moved_b:.0f} px: the {_thing(a)} is not the one passing", seen, "incomplete")  # fmt: skip
    full = float(np.median([d.area for d in ta.clear()]))
    shares = [ta.detections[t].area / full if t in ta.detections else 0.0 for t in over]
    hidden = sum(share <= 0.5 for share in shares)
    shown = sum(share >= 0.6 for share in shares)
    if verb == "behind" and hidden <= len(over) / 2:
        return Verdict(False, f"the {_thing(a)} is hidden in {hidden}/{len(over)} frames over the {_thing(b)}: not behind it", seen, "incomplete")  # fmt: skip
    if verb == "front" and shown <= len(over) / 2:
        return Verdict(False, f"the {_thing(a)} is whole in {shown}/{len(over)} frames over the {_thing(b)}: not in front of it", seen, "incomplete")  # fmt: skip
    parts = [
        [d for t, d in ta.detections.items() if not d.touching and (t < over[0] if i == 0 else t > over[-1])]
        for i in range(2)
    ]  # fmt: skip
    if not parts[1]:
        return Verdict(False, f"the {_thing(a)} does not come back out", seen, "incomplete")
    readings = [
        (Counter(d.color for d in p).most_common(1)[0][0], Counter(d.shape for d in p).most_common(1)[0][0],
         float(np.median([d.side for d in p])))
        for p in parts if p
    ]  # fmt: skip
    if len(readings) == 2 and (readings[0][:2] != readings[1][:2] or not 0.75 <= readings[1][2] / readings[0][2] <= 1.33):  # fmt: skip
        (c0, s0, z0), (c1, s1, z1) = readings
        return Verdict(False, f"went in as a {c0} {s0} ({z0:.0f} px), came back as a {c1} {s1} ({z1:.0f} px)", seen, "inconsistent")  # fmt: skip
    return Verdict(True, "", seen)


def _grade_interactions(tracks: list[Track], comp: Composition, T: int) -> Verdict:
    seen = _seen(tracks)
    found, reason, kind = _missing(tracks, comp.things, apart=False)
    if reason:
        return Verdict(False, reason, seen, kind)
    if comp.words[0].startswith("push_"):
        return _grade_push(*found, comp, T, seen)
    return _grade_pass(*found, comp, T, seen)
