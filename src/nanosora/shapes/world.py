"""The shapes world (DESIGN.md section 3): one coloured shape moving in a straight line on black.

Small enough to learn on a CPU, exact enough to grade: every object pixel is exactly its palette
colour (no anti-aliasing), so `nanosora.shapes.probe` can read colour, shape and direction back.
Eight compositions are held out of training to measure compositional generalisation.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from nanosora.atomic import atomic_path
from nanosora.shapes.captions import canonical_caption, caption, parse_prompt
from nanosora.video.io import VideoError, probe, write_video

SIZE = 64
NUM_FRAMES = 17  # 4k+1 with k=4: the causal VAE maps it to 5 latent frames
FPS = 8
MIN_SIDE, MAX_SIDE = 14, 20  # bounding-box side in px, inclusive
MIN_SPEED, MAX_SPEED = 1.5, 2.5  # px per frame

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 70),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (160, 70, 220),
    "orange": (250, 140, 30),
    "cyan": (40, 210, 220),
    "white": (235, 235, 235),
}
SHAPES = ("circle", "square", "triangle")
# Shapes outside the base world: never in `nanosora shapes` data unless asked for, so a model
# trained on SHAPES has never seen them (configs/shapes_lora_diamond.yaml teaches one).
NEW_SHAPES = ("diamond",)
DIRECTIONS = ("left", "right", "up", "down")
# Unit velocity per direction in image coordinates (x right, y down: "up" is -y).
VELOCITY: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}

# (color, shape, direction): each colour, shape and direction still appears in training, only
# these combinations never do.
HELD_OUT: frozenset[tuple[str, str, str]] = frozenset(
    {
        ("red", "triangle", "up"),
        ("green", "circle", "left"),
        ("blue", "square", "down"),
        ("yellow", "triangle", "right"),
        ("purple", "circle", "down"),
        ("orange", "square", "up"),
        ("cyan", "triangle", "left"),
        ("white", "circle", "right"),
    }
)
ALL_COMPOSITIONS: tuple[tuple[str, str, str], ...] = tuple(
    (c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS
)
Split = Literal["train", "heldout", "all"]


@dataclass(frozen=True)
class ClipSpec:
    """Everything that determines one clip; `render(spec)` is a pure function of it."""

    color: str
    shape: str
    direction: str
    size_px: int  # side of the object's bounding box
    speed: float  # px per frame
    x0: float  # top-left corner of the bounding box at frame 0 (px, subpixel)
    y0: float
    caption: str

    def position(self, frame: int) -> tuple[float, float]:
        """Top-left `(x, y)` of the bounding box at `frame`."""
        vx, vy = VELOCITY[self.direction]
        return self.x0 + vx * self.speed * frame, self.y0 + vy * self.speed * frame

    @property
    def split(self) -> Literal["train", "heldout"]:
        """Which split this composition belongs to."""
        return "heldout" if (self.color, self.shape, self.direction) in HELD_OUT else "train"


def compositions(split: Split, shapes: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
    """The (color, shape, direction) triples of a split, in a fixed order (96 = 88 + 8).

    ``shapes`` (e.g. ``NEW_SHAPES``) replaces the base shapes: every colour and direction of
    those shapes, none held out (a concept dataset for fine-tuning).
    """
    if shapes is not None:
        unknown = [s for s in shapes if s not in SHAPES + NEW_SHAPES]
        if unknown or not shapes:
            raise ValueError(f"unknown shapes {unknown}; expected some of {SHAPES + NEW_SHAPES}")
        return [(c, s, d) for c in COLORS for s in shapes for d in DIRECTIONS]
    match split:
        case "train":
            return [c for c in ALL_COMPOSITIONS if c not in HELD_OUT]
        case "heldout":
            return [c for c in ALL_COMPOSITIONS if c in HELD_OUT]
        case "all":
            return list(ALL_COMPOSITIONS)
    raise ValueError(f"unknown split {split!r}; expected 'train', 'heldout' or 'all'")


def sample_spec(
    rng: np.random.Generator, split: Split = "train", shapes: tuple[str, ...] | None = None
) -> ClipSpec:
    """Draw one clip: a composition of `split`, size, speed, and a start keeping it inside.

    The start is drawn from the interval that keeps the whole bounding box inside the canvas at
    both ends of the path (hence in every frame, the path being a straight line).
    """
    options = compositions(split, shapes)
    color, shape, direction = options[rng.integers(len(options))]
    size_px = int(rng.integers(MIN_SIDE, MAX_SIDE + 1))
    speed = float(rng.uniform(MIN_SPEED, MAX_SPEED))
    travel = speed * (NUM_FRAMES - 1)
    free = SIZE - size_px  # largest allowed top-left coordinate
    along = float(rng.uniform(0.0, free - travel))  # start measured from the departure edge
    across = float(rng.uniform(0.0, free))
    match direction:
        case "right":
            x0, y0 = along, across
        case "left":
            x0, y0 = free - along, across
        case "down":
            x0, y0 = across, along
        case _:  # up
            x0, y0 = across, free - along
    text = caption(color, shape, direction, rng)
    return ClipSpec(color, shape, direction, size_px, speed, x0, y0, text)


def shape_mask(shape: str, x: float, y: float, side: float, size: int = SIZE) -> np.ndarray:
    """Boolean `(size, size)` mask of `shape` with bounding box `[x, x+side) x [y, y+side)`.

    Pixels are tested at their centres (i + 0.5), so a subpixel position gives a hard-edged,
    anti-aliasing-free mask and the object keeps exactly its palette colour.
    """
    cy, cx = np.mgrid[0:size, 0:size] + 0.5
    return shape_test(shape, cx, cy, x, y, side)


def shape_test(
    shape: str, cx: np.ndarray, cy: np.ndarray, x: float, y: float, side: float
) -> np.ndarray:
    """Which points `(cx, cy)` lie in `shape` with bounding box `[x, x+side) x [y, y+side)`.

    `shape_mask` tests every pixel centre; the scenes world tests a window of them, or
    rotated coordinates, with the same arithmetic.
    """
    inside_x = (cx >= x) & (cx < x + side)
    inside_y = (cy >= y) & (cy < y + side)
    match shape:
        case "square":
            return inside_x & inside_y
        case "circle":
            r = side / 2
            return (cx - (x + r)) ** 2 + (cy - (y + r)) ** 2 <= r * r
        case "triangle":
            # Isosceles, apex at top centre, base on the bottom edge: half-width grows linearly
            # from 0 at y to side/2 at y + side.
            half_width = (cy - y) / 2
            return inside_y & (np.abs(cx - (x + side / 2)) <= half_width)
        case "diamond":
            # A square standing on a corner: |dx| + |dy| <= side / 2 around the box centre.
            r = side / 2
            return np.abs(cx - (x + r)) + np.abs(cy - (y + r)) <= r
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES + NEW_SHAPES}")


def render(spec: ClipSpec) -> np.ndarray:
    """Render a clip -> uint8 `(NUM_FRAMES, SIZE, SIZE, 3)` RGB, black background."""
    frames = np.zeros((NUM_FRAMES, SIZE, SIZE, 3), np.uint8)
    color = np.array(COLORS[spec.color], np.uint8)
    for k in range(NUM_FRAMES):
        x, y = spec.position(k)
        frames[k][shape_mask(spec.shape, x, y, spec.size_px)] = color
    return frames


def clip_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for clip `index` of dataset `seed`: independent of order and worker count."""
    return np.random.default_rng([seed, index])


def _clip_is_valid(path: Path) -> bool:
    """True if `path` is a complete shapes clip (so a resumed run can skip it)."""
    try:
        info = probe(path)
    except VideoError:
        return False
    return (info.num_frames, info.height, info.width) == (NUM_FRAMES, SIZE, SIZE)


def _write_clip(job: tuple[ClipSpec, str, int]) -> None:
    """Worker: render one spec and write it to mp4, unless a valid file is already there."""
    spec, path, crf = job
    if not _clip_is_valid(Path(path)):
        write_video(path, render(spec), fps=FPS, crf=crf)


def _manifest_row(spec: ClipSpec, index: int, seed: int) -> dict[str, object]:
    """One manifest row (DESIGN.md section 2 columns plus the shapes attributes)."""
    return {
        "path": f"clips/{index:06d}.mp4",
        "text": spec.caption,
        "color": spec.color,
        "shape": spec.shape,
        "direction": spec.direction,
        "size_px": spec.size_px,
        "speed": spec.speed,
        "x0": spec.x0,
        "y0": spec.y0,
        "num_frames": NUM_FRAMES,
        "fps": float(FPS),
        "height": SIZE,
        "width": SIZE,
        "source": "shapes",
        "source_id": f"shapes-s{seed}-{index:06d}",
        "split": spec.split,
    }


def generate_dataset(
    out_dir: str | os.PathLike,
    num: int,
    seed: int = 0,
    split: Split = "train",
    crf: int = 12,
    workers: int = 1,
    progress: bool = True,
    shapes: tuple[str, ...] | None = None,
) -> Path:
    """Write `num` clips to `out_dir/clips/NNNNNN.mp4` and `out_dir/manifest.parquet`.

    Deterministic in `seed` (clip i uses `clip_rng(seed, i)`), so any worker count gives the same
    dataset, and resumable: valid clips already on disk are kept. `shapes` draws only those
    shapes (e.g. the new concept "diamond"). Returns `out_dir`.
    """
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    specs = [sample_spec(clip_rng(seed, i), split, shapes) for i in range(num)]
    jobs = [(s, str(out / f"clips/{i:06d}.mp4"), crf) for i, s in enumerate(specs)]
    bar = tqdm(total=num, desc="shapes clips", unit="clip", disable=not progress)
    if workers <= 1:
        for job in jobs:
            _write_clip(job)
            bar.update()
    else:
        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for _ in pool.map(_write_clip, jobs, chunksize=16):
                bar.update()
    bar.close()
    manifest = pd.DataFrame([_manifest_row(s, i, seed) for i, s in enumerate(specs)])
    with atomic_path(out / "manifest.parquet") as tmp:  # readers never see half a manifest
        manifest.to_parquet(tmp, index=False)
    return out


# In-distribution evaluation compositions: 3 per colour, every (shape, direction) pair exactly
# twice (so each shape 8 times, each direction 6 times), no colour repeating a direction, none
# held out. Found once by a small backtracking search and frozen here so reports stay comparable.
EVAL_TRAIN: tuple[tuple[str, str, str], ...] = (
    ("red", "circle", "left"), ("red", "square", "right"), ("red", "triangle", "down"),
    ("green", "circle", "right"), ("green", "square", "up"), ("green", "triangle", "down"),
    ("blue", "circle", "up"), ("blue", "square", "left"), ("blue", "triangle", "right"),
    ("yellow", "circle", "down"), ("yellow", "square", "left"), ("yellow", "triangle", "up"),
    ("purple", "circle", "left"), ("purple", "square", "right"), ("purple", "triangle", "up"),
    ("orange", "circle", "right"), ("orange", "square", "down"), ("orange", "triangle", "left"),
    ("cyan", "circle", "up"), ("cyan", "square", "down"), ("cyan", "triangle", "right"),
    ("white", "circle", "down"), ("white", "square", "up"), ("white", "triangle", "left"),
)  # fmt: skip


def eval_prompts(split: Literal["train", "heldout"]) -> list[tuple[str, str, str, str]]:
    """Fixed evaluation prompts `(color, shape, direction, canonical caption)`.

    "heldout": the 8 held-out compositions; "train": the 24 of `EVAL_TRAIN`.
    """
    match split:
        case "heldout":
            picks = sorted(HELD_OUT, key=ALL_COMPOSITIONS.index)
        case "train":
            picks = list(EVAL_TRAIN)
        case _:
            raise ValueError(f"unknown split {split!r}; expected 'train' or 'heldout'")
    return [(c, s, d, canonical_caption(c, s, d)) for c, s, d in picks]


def missing_attributes(prompt: str) -> list[str]:
    """The attributes (``colour``, ``shape``, ``direction``) ``prompt`` names no known word for."""
    names = ("colour", "shape", "direction")
    return [n for n, v in zip(names, parse_prompt(prompt), strict=True) if v is None]


# What a model of the base world understands, for messages to the person who writes prompts.
VOCABULARY = (
    f"colours ({', '.join(COLORS)}), shapes ({', '.join(SHAPES)}) and directions "
    f"({', '.join(DIRECTIONS)})"
)


def vocabulary_warning(prompt: str) -> str | None:
    """Why a shapes-world model may not understand ``prompt`` (the attributes it does not name),
    or None when it names a colour, a shape and a direction."""
    missing = missing_attributes(prompt)
    if not missing:
        return None
    return f"the shapes model knows {VOCABULARY}; {prompt!r} names no {', no '.join(missing)}"
