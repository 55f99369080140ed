"""The drawing stages: a keyframe and a clip per shot, batched, resumable, failures kept per shot.

Shots are drawn in batches for speed; if a batch raises, its shots are drawn one by one so a
single bad shot fails alone and the others' work is kept. With the shapes model every clip is
read back with the shapes probe and compared with its prompt; a clip that disagrees is redrawn
with a new seed up to `rerolls` times (the best-matching attempt is kept and its seed recorded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from nanosora.story import animation
from nanosora.story.keyframes import find_user_keyframe, generate_keyframes, read_image, write_image
from nanosora.story.schema import Shot, ShotList, StoryError
from nanosora.story.state import RunState, file_digest, fingerprint

if TYPE_CHECKING:
    from nanosora.generate import Pipeline
    from nanosora.story.pipeline import RenderConfig

REROLL_STRIDE = (
    7919  # attempt k of a shot with seed s uses s + k * 7919: far from other shots' seeds
)
J = TypeVar("J")


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


def stage_keyframes(shots: ShotList, work: Path, state: RunState, cfg: RenderConfig,
                    get_pipe: Callable[[], Pipeline], model: str) -> int:  # fmt: skip
    """User keyframes copied, missing or outdated model keyframes drawn; returns how many drawn."""
    user = _user_keyframes(shots, work, state, cfg)
    jobs = []
    for i, shot in enumerate(shots.shots):
        seed = shot_seed(shot, i, cfg)
        inputs = fingerprint("model", shot.prompt, seed, model, cfg.steps, cfg.cfg_scale)
        path = work / "keyframes" / f"{shot.id}.png"
        if shot.id not in user and not state.keep(shot.id, "keyframe", path, inputs):
            jobs.append(Job(shot, seed, inputs))
    if not jobs:
        return 0
    pipe = get_pipe()

    def draw(chunk: list[Job]) -> list[np.ndarray]:
        return generate_keyframes(pipe, [j.shot.prompt for j in chunk], [j.seed for j in chunk],
                                  cfg.steps, cfg.cfg_scale)  # fmt: skip

    for job, result in zip(jobs, draw_isolated(jobs, draw, cfg.batch_size), strict=True):
        if isinstance(result, Exception):
            state.failed(job.shot.id, "keyframe", _error(result))
            continue
        path = write_image(work / "keyframes" / f"{job.shot.id}.png", result)
        state.wrote(job.shot.id, "keyframe", path, job.inputs, source="model", seed=job.seed)
    return len(jobs)


def verdict(clip: np.ndarray, prompt: str, vocabulary: str) -> tuple[int, str]:
    """(attributes of the prompt the clip shows (3 = all), the probe's reading); -1 if unchecked."""
    if vocabulary != "shapes":
        return -1, ""
    from nanosora.shapes.captions import parse_prompt
    from nanosora.shapes.probe import probe_frames

    want = parse_prompt(prompt)
    if None in want:
        return -1, "prompt outside the shapes vocabulary"
    r = probe_frames(clip)
    got = (r.color, r.shape, r.direction)
    return sum(a == b for a, b in zip(got, want, strict=True)), " ".join(str(g) for g in got)


def _clip_jobs(
    shots: ShotList, work: Path, state: RunState, cfg: RenderConfig, model: str
) -> list[Job]:
    """Shots whose clip is missing, outdated or failed (and whose keyframe is usable)."""
    jobs = []
    for i, shot in enumerate(shots.shots):
        keyframe = work / "keyframes" / f"{shot.id}.png"
        if animation.USES_KEYFRAME and not keyframe.is_file():
            state.failed(shot.id, "clip", "no keyframe to animate (see the keyframe error)")
            continue
        seed = shot_seed(shot, i, cfg)
        kf = file_digest(keyframe) if animation.USES_KEYFRAME else None
        inputs = fingerprint("clip", shot.prompt, seed, model, cfg.steps, cfg.cfg_scale, cfg.num_frames,
                             cfg.rerolls, kf)  # fmt: skip
        if not state.keep(shot.id, "clip", work / "clips" / f"{shot.id}.mp4", inputs):
            jobs.append(Job(shot, seed, inputs))
    return jobs


@dataclass(frozen=True)
class _Take:
    """One drawn attempt of a shot's clip."""

    score: int  # prompt attributes the probe confirms (3 = all; -1 = not checked)
    seed: int
    tries: int  # attempts drawn for the shot so far
    clip: np.ndarray
    reading: str


def _draw_takes(pipe: Pipeline, jobs: list[Job], work: Path, cfg: RenderConfig,
                vocabulary: str) -> tuple[dict[str, _Take], dict[str, str]]:  # fmt: skip
    """Draw every job, redrawing clips the probe disagrees with; (best take, error) per shot id."""
    best: dict[str, _Take] = {}
    errors: dict[str, str] = {}
    pending = list(jobs)
    for attempt in range(cfg.rerolls + 1):
        seeds = {j.shot.id: j.seed + attempt * REROLL_STRIDE for j in pending}

        def draw(chunk: list[Job], seeds: dict[str, int] = seeds) -> list[np.ndarray]:
            kfs = [read_image(work / "keyframes" / f"{j.shot.id}.png", j.shot.id) if animation.USES_KEYFRAME
                   else None for j in chunk]  # fmt: skip
            return animation.animate_shots(pipe, [j.shot.prompt for j in chunk], kfs,
                                           [seeds[j.shot.id] for j in chunk], cfg.steps, cfg.cfg_scale,
                                           cfg.num_frames)  # fmt: skip

        still = []
        for job, result in zip(pending, draw_isolated(pending, draw, cfg.batch_size), strict=True):
            sid = job.shot.id
            if isinstance(result, Exception):  # generation errors are not luck: no reroll
                errors[sid] = _error(result)
                continue
            score, reading = verdict(result, job.shot.prompt, vocabulary)
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


def stage_clips(shots: ShotList, work: Path, state: RunState, cfg: RenderConfig,
                get_pipe: Callable[[], Pipeline], model: str, vocabulary: str) -> int:  # fmt: skip
    """Animate every shot that needs it; returns how many shots were drawn."""
    from nanosora.video.io import write_video

    jobs = _clip_jobs(shots, work, state, cfg, model)
    if not jobs:
        return 0
    pipe = get_pipe()
    best, errors = _draw_takes(pipe, jobs, work, cfg, vocabulary)
    for job in jobs:
        take = best.get(job.shot.id)
        if take is None:
            state.failed(job.shot.id, "clip", errors.get(job.shot.id, "no clip was drawn"))
            continue
        path = write_video(work / "clips" / f"{job.shot.id}.mp4", take.clip, fps=pipe.cfg.fps)
        state.wrote(job.shot.id, "clip", path, job.inputs, seed=take.seed, tries=take.tries,
                    probe=take.reading, matched=take.score)  # fmt: skip
    return len(jobs)
