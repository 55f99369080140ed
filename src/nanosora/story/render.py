"""The drawing stages: a keyframe and a clip per shot, batched, resumable, failures kept per shot.

Shots are drawn in batches for speed; if a batch raises, its shots are drawn one by one so a
single bad shot fails alone and the others' work is kept. With the shapes model every drawing is
read back with the shapes probe and compared with its prompt, a keyframe for colour and shape, a
clip for colour, shape and direction; one that disagrees is redrawn with a new seed up to
`rerolls` times (the best-matching attempt is kept and its seed recorded). Keyframes are checked
because an image-to-video clip starts from its keyframe: it cannot mend a wrong shape or an empty
frame, so a bad keyframe would fail every redraw of its clip. With a scenes model the scenes
grader judges every clip against its caption (pass or fail, with its reason), and a keyframe for
what one still can show: the objects the caption names (and a count or a relation as such).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from nanosora.pipeline import Pipeline
from nanosora.shapes.captions import parse_prompt
from nanosora.shapes.grader import grade
from nanosora.shapes.grammar import Composition, parse
from nanosora.shapes.probe import MIN_CONTRAST, probe_frames
from nanosora.shapes.world import MIN_SPEED
from nanosora.story import animation
from nanosora.story.animation import AnimateMode, resolve_mode
from nanosora.story.cast import SCENES
from nanosora.story.keyframes import (
    find_user_keyframe,
    generate_keyframes,
    load_keyframe,
    read_image,
    write_image,
)
from nanosora.story.schema import Shot, ShotList, StoryError
from nanosora.story.state import RunState, file_digest, fingerprint
from nanosora.video.io import write_video
from nanosora.video.metrics import psnr

REROLL_STRIDE = (
    7919  # attempt k of a shot with seed s uses s + k * 7919: far from other shots' seeds
)
# Keyframe redraws per clip redraw (`rerolls`): a still costs about a quarter of a clip, and a
# keyframe that fails the probe would fail every redraw of an image-to-video clip.
KEYFRAME_REROLLS = 3
STILL_FRAMES = 5  # a keyframe is graded as a clip of this many copies (tracks need 3 frames)
J = TypeVar("J")


@dataclass(frozen=True)
class RenderConfig:
    """How keyframes and clips are drawn."""

    model: str = ""  # pipeline directory; empty = the shipped shapes model
    seed: int = 0  # shot i without its own seed uses seed + i
    steps: int | None = None  # sampling steps; None = the pipeline's default
    cfg_scale: float | None = None  # guidance scale; None = the pipeline's default
    num_frames: int | None = None  # frames per clip (4k+1); None = the pipeline's default
    keyframes: str = ""  # folder of user keyframes named <shot id>.png/.jpg/...
    # shapes and scenes models: redraw a keyframe or clip with a new seed while the probe or the
    # scenes grader disagrees with it
    rerolls: int = 2
    batch_size: int = 6  # shots drawn per batch
    # i2v: each clip starts from its keyframe; t2v: from the prompt alone; auto: i2v when the
    # clip has frames beyond the keyframe (see story/animation.py)
    animate: AnimateMode = "auto"

    def __post_init__(self) -> None:
        resolve_mode(self.animate, 5)  # validates the name; the clip length is checked at run time


@dataclass(frozen=True)
class Job:
    """One shot to draw."""

    shot: Shot
    seed: int
    inputs: str  # fingerprint recorded in state.json


def shot_seed(shot: Shot, index: int, cfg: RenderConfig) -> int:
    """The shot's own seed, else the run seed plus its position."""
    return shot.seed if shot.seed is not None else cfg.seed + index


def draw_isolated(jobs: Sequence[J], draw: Callable[[list[J]], list[np.ndarray]],
                  batch_size: int) -> list[np.ndarray | Exception]:  # fmt: skip
    """`draw` in batches; a failing batch is retried shot by shot so only bad shots fail."""
    out: list[np.ndarray | Exception] = []
    for lo in range(0, len(jobs), max(1, batch_size)):
        chunk = list(jobs[lo : lo + max(1, batch_size)])
        try:
            out += draw(chunk)
            continue
        except Exception as e:  # any failure of one shot must not lose the others' work
            if len(chunk) == 1:
                out.append(e)
                continue
        for job in chunk:
            try:
                out += draw([job])
            except Exception as e:
                out.append(e)
    return out


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {e}"


def _user_keyframes(shots: ShotList, work: Path, state: RunState, cfg: RenderConfig) -> set[str]:
    """Copy user images into keyframes/ (as PNG); returns the ids that have one (or failed)."""
    folder = Path(cfg.keyframes) if cfg.keyframes else None
    if folder is not None and not folder.is_dir():
        raise StoryError(f"keyframe folder {folder} does not exist")
    handled = set()
    for shot in shots.shots:
        try:
            src = find_user_keyframe(shot, folder, work)
            if src is None:
                continue
            handled.add(shot.id)
            path = write_image(work / "keyframes" / f"{shot.id}.png", read_image(src, shot.id))
            state.wrote(
                shot.id, "keyframe", path, fingerprint("user", file_digest(src)), source=str(src)
            )
        except StoryError as e:
            handled.add(shot.id)
            state.failed(shot.id, "keyframe", str(e))
    return handled


def verdict(frames: np.ndarray, prompt: str, vocabulary: str, clip_frames: int) -> tuple[int, str]:
    """(attributes of the prompt the drawing shows, 3 = all; the probe's reading); -1 if unchecked.

    A clip `(T, H, W, 3)` is read for colour, shape and direction. A still `(H, W, 3)` (a
    keyframe) is read for colour and shape, and in place of the direction for room to start it:
    a clip of `clip_frames` frames animated from the still must be able to move that way.
    """
    if vocabulary == SCENES:
        return scenes_verdict(frames, prompt)
    if vocabulary != "shapes":
        return -1, ""

    want = parse_prompt(prompt)
    if None in want:
        return -1, "prompt outside the shapes vocabulary"
    if frames.ndim == 4:
        r = probe_frames(frames)
        got = (r.color, r.shape, r.direction)
        return sum(a == b for a, b in zip(got, want, strict=True)), " ".join(map(str, got))
    r, free = probe_frames(frames[None]), room_ahead(frames, want[2])
    got = (r.color, r.shape, want[2] if free >= min_room(clip_frames) else None)
    reading = f"{r.color} {r.shape}, {free} px free {want[2]}"
    return sum(a == b for a, b in zip(got, want, strict=True)), reading


def scenes_verdict(frames: np.ndarray, prompt: str) -> tuple[int, str]:
    """The scenes grader on a clip `(T, H, W, 3)` or a still `(H, W, 3)`: (3, what it saw) when
    it passes, (0, the reason) when not, (-1, why) for a prompt outside the scenes grammar.

    A still cannot show motion or events: it is graded for `still_composition` of the prompt.
    """
    try:
        comp = parse(prompt)[0]
    except ValueError:
        return -1, "prompt outside the scenes grammar"
    if frames.ndim == 3:
        comp, frames = still_composition(comp), np.repeat(frames[None], STILL_FRAMES, axis=0)
    v = grade(frames, comp)
    return (3, v.seen) if v.passed else (0, v.reason)


def still_composition(comp: Composition) -> Composition:
    """What one still of `comp` can show: an attributes, numeracy or spatial composition as it
    is; of the others, the objects it names, each once (sizes are not checked)."""
    if comp.category in ("attributes", "numeracy", "spatial"):
        return comp
    return Composition("attributes", tuple(dict.fromkeys(comp.things)))


def room_ahead(still: np.ndarray, direction: str) -> int:
    """Free pixels between the object in `still` `(H, W, 3)` and the edge it will move toward."""
    value = still.max(axis=2).astype(np.int16)  # max channel, as the probe: every hue alike
    ys, xs = np.nonzero(value > np.median(value) + MIN_CONTRAST)
    if len(xs) == 0:
        return 0
    h, w = value.shape
    ahead = {"left": xs.min(), "right": w - 1 - xs.max(), "up": ys.min(), "down": h - 1 - ys.max()}
    return int(ahead[direction])


def min_room(clip_frames: int) -> float:
    """Room a keyframe needs ahead of its object: 2/3 of the slowest shapes-world motion over the clip.

    Single-frame generation places the object without regard to the direction (the first frames
    of text-to-video start at the departure edge; the model's stills do not), and an object with
    no room ahead cannot start the motion: clips animated from such keyframes often move the
    wrong way. For 17 frames the room is 16 px (2/3 x 1.5 px/frame x 16 frames).
    """
    return 2 / 3 * MIN_SPEED * (clip_frames - 1)


def first_frame_psnr(clip: np.ndarray, keyframe: np.ndarray) -> float:
    """PSNR (dB, capped at 100) of the clip's first frame against the keyframe it was drawn from."""
    value = psnr(np.moveaxis(clip[:1], -1, 1), np.moveaxis(keyframe[None], -1, 1), 255.0)[0]
    return round(min(float(value), 100.0), 2)


@dataclass(frozen=True)
class _Take:
    """One drawn attempt of a shot's keyframe or clip."""

    score: int  # prompt attributes the probe confirms (-1 = not checked)
    seed: int
    tries: int  # attempts drawn for the shot so far
    frames: np.ndarray  # the clip (T, H, W, 3) or the still (H, W, 3)
    reading: str


Draw = Callable[[list[Job], dict[str, int]], list[np.ndarray]]  # (jobs, seed per shot id)
Check = Callable[[np.ndarray, str], tuple[int, str]]  # (drawing, prompt) -> `verdict`


def _graded(take: _Take, vocabulary: str) -> dict[str, bool]:
    """The scenes grader's pass or fail for state.json (the probe's drawings have a score)."""
    return {"passed": take.score == 3} if vocabulary == SCENES and take.score >= 0 else {}


def _checker(cfg: RenderConfig, pipe: Pipeline, vocabulary: str) -> Check:
    """`verdict` for this run's clip length."""
    clip_frames = cfg.num_frames or pipe.cfg.num_frames
    return functools.partial(verdict, vocabulary=vocabulary, clip_frames=clip_frames)


def _draw_takes(jobs: list[Job], draw: Draw, rerolls: int, batch_size: int,
                check: Check) -> tuple[dict[str, _Take], dict[str, str]]:  # fmt: skip
    """Draw every job, redrawing up to `rerolls` times what `check` disagrees with; (best take,
    error) per shot id."""
    best: dict[str, _Take] = {}
    errors: dict[str, str] = {}
    pending = list(jobs)
    for attempt in range(rerolls + 1):
        seeds = {j.shot.id: j.seed + attempt * REROLL_STRIDE for j in pending}
        results = draw_isolated(pending, functools.partial(draw, seeds=seeds), batch_size)
        still = []
        for job, result in zip(pending, results, strict=True):
            sid = job.shot.id
            if isinstance(result, Exception):  # generation errors are not luck: no reroll
                errors[sid] = _error(result)
                continue
            score, reading = check(result, job.shot.prompt)
            if sid not in best or score > best[sid].score:  # ties keep the earlier, planned seed
                best[sid] = _Take(score, seeds[sid], attempt + 1, result, reading)
            else:
                best[sid] = dataclasses.replace(best[sid], tries=attempt + 1)
            if score not in (-1, 3):
                still.append(job)
        pending = still
        if not pending:
            break
    return best, errors


def stage_keyframes(shots: ShotList, work: Path, state: RunState, cfg: RenderConfig,
                    get_pipe: Callable[[], Pipeline], model: str, vocabulary: str) -> int:  # fmt: skip
    """User keyframes copied, missing or outdated model keyframes drawn; returns how many drawn.

    A model keyframe the probe disagrees with (colour, shape, room to move) is redrawn like a
    clip: with image-to-video the clip starts from it and cannot mend it.
    """
    user = _user_keyframes(shots, work, state, cfg)
    jobs = []
    for i, shot in enumerate(shots.shots):
        seed = shot_seed(shot, i, cfg)
        inputs = fingerprint("model", shot.prompt, seed, model, cfg.steps, cfg.cfg_scale,
                             cfg.rerolls, cfg.num_frames)  # fmt: skip
        path = work / "keyframes" / f"{shot.id}.png"
        if shot.id not in user and not state.keep(shot.id, "keyframe", path, inputs):
            jobs.append(Job(shot, seed, inputs))
    if not jobs:
        return 0
    pipe = get_pipe()

    def draw(chunk: list[Job], seeds: dict[str, int]) -> list[np.ndarray]:
        return generate_keyframes(pipe, [j.shot.prompt for j in chunk], [seeds[j.shot.id] for j in chunk],
                                  cfg.steps, cfg.cfg_scale)  # fmt: skip

    check = _checker(cfg, pipe, vocabulary)
    best, errors = _draw_takes(jobs, draw, KEYFRAME_REROLLS * cfg.rerolls, cfg.batch_size, check)
    for job in jobs:
        take = best.get(job.shot.id)
        if take is None:
            state.failed(job.shot.id, "keyframe", errors.get(job.shot.id, "no keyframe was drawn"))
            continue
        path = write_image(work / "keyframes" / f"{job.shot.id}.png", take.frames)
        state.wrote(job.shot.id, "keyframe", path, job.inputs, source="model", seed=take.seed,
                    tries=take.tries, probe=take.reading, matched=take.score,
                    **_graded(take, vocabulary))  # fmt: skip
    return len(jobs)


def _clip_jobs(shots: ShotList, work: Path, state: RunState, cfg: RenderConfig, model: str,
               mode: str) -> list[Job]:  # fmt: skip
    """Shots whose clip is missing, outdated or failed (and, for i2v, whose keyframe is usable)."""
    jobs = []
    for i, shot in enumerate(shots.shots):
        keyframe = work / "keyframes" / f"{shot.id}.png"
        digest = None
        if mode == "i2v":
            if state.record(shot.id, "keyframe").get("error") or not keyframe.is_file():
                state.failed(shot.id, "clip", "no keyframe to animate (see the keyframe error)")
                continue
            digest = file_digest(keyframe)  # a new or swapped keyframe re-animates its shot
        seed = shot_seed(shot, i, cfg)
        inputs = fingerprint("clip", mode, shot.prompt, seed, model, cfg.steps, cfg.cfg_scale,
                             cfg.num_frames, cfg.rerolls, digest)  # fmt: skip
        if not state.keep(shot.id, "clip", work / "clips" / f"{shot.id}.mp4", inputs):
            jobs.append(Job(shot, seed, inputs))
    return jobs


def _first_frames(jobs: list[Job], work: Path, state: RunState,
                  pipe: Pipeline) -> dict[str, np.ndarray]:  # fmt: skip
    """Each job's keyframe at the pipeline's size; an unreadable one fails its shot alone."""
    out = {}
    for job in jobs:
        path = work / "keyframes" / f"{job.shot.id}.png"
        try:
            out[job.shot.id] = load_keyframe(path, job.shot.id, pipe.cfg.height, pipe.cfg.width)
        except StoryError as e:
            state.failed(job.shot.id, "clip", str(e))
    return out


def stage_clips(shots: ShotList, work: Path, state: RunState, cfg: RenderConfig,
                get_pipe: Callable[[], Pipeline], model: str, vocabulary: str,
                mode: Literal["i2v", "t2v"]) -> int:  # fmt: skip
    """Animate every shot that needs it (`mode`: from its keyframe or its prompt); returns how
    many shots were tried."""
    jobs = _clip_jobs(shots, work, state, cfg, model, mode)
    if not jobs:
        return 0
    pipe = get_pipe()
    firsts = _first_frames(jobs, work, state, pipe) if mode == "i2v" else {}
    ready = [j for j in jobs if mode == "t2v" or j.shot.id in firsts]

    def draw(chunk: list[Job], seeds: dict[str, int]) -> list[np.ndarray]:
        kfs = [firsts[j.shot.id] for j in chunk] if mode == "i2v" else None
        return animation.animate_shots(pipe, [j.shot.prompt for j in chunk], kfs,
                                       [seeds[j.shot.id] for j in chunk], cfg.steps, cfg.cfg_scale,
                                       cfg.num_frames)  # fmt: skip

    check = _checker(cfg, pipe, vocabulary)
    best, errors = _draw_takes(ready, draw, cfg.rerolls, cfg.batch_size, check)
    for job in ready:
        sid, take = job.shot.id, best.get(job.shot.id)
        if take is None:
            state.failed(sid, "clip", errors.get(sid, "no clip was drawn"))
            continue
        extra = {"first_frame_psnr": first_frame_psnr(take.frames, firsts[sid])} if firsts else {}
        path = write_video(work / "clips" / f"{sid}.mp4", take.frames, fps=pipe.cfg.fps)
        state.wrote(sid, "clip", path, job.inputs, seed=take.seed, tries=take.tries,
                    probe=take.reading, matched=take.score, **extra, **_graded(take, vocabulary))  # fmt: skip
    return len(jobs)
