"""Animation: each shot's keyframe and prompt become a clip.

This is the one boundary that changes when first-frame conditioning lands (issue 5): then
`animate_shots` passes the keyframes to the pipeline as image conditions and `USES_KEYFRAME`
becomes True (so a swapped keyframe re-animates its shot on `--resume`). Until then a shot is
animated with text-to-video from its prompt and seed, and the keyframe is only the storyboard's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from nanosora.generate import Pipeline

USES_KEYFRAME = False  # True once the pipeline accepts a first-frame condition (issue 5)


def animate_shots(
    pipe: Pipeline,
    prompts: list[str],
    keyframes: list[np.ndarray | None],
    seeds: list[int],
    steps: int | None = None,
    cfg_scale: float | None = None,
    num_frames: int | None = None,
) -> list[np.ndarray]:
    """Clips `(T, H, W, 3)` uint8, one per shot, batched; shot i uses noise seed `seeds[i]`.

    The pipeline seeds each prompt's noise on its own, so a shot's clip does not depend on which
    shots share its batch: batching is only for speed, and a retried shot comes out the same.
    """
    if not len(prompts) == len(keyframes) == len(seeds):
        raise ValueError(f"{len(prompts)} prompts, {len(keyframes)} keyframes, {len(seeds)} seeds")
    videos = pipe.generate(
        prompts, steps=steps, cfg_scale=cfg_scale, num_frames=num_frames, seeds=seeds
    )
    return list(videos)


def animate_shot(
    pipe: Pipeline,
    prompt: str,
    keyframe: np.ndarray | None,
    seed: int,
    steps: int | None = None,
    cfg_scale: float | None = None,
    num_frames: int | None = None,
) -> np.ndarray:
    """One shot's clip `(T, H, W, 3)` uint8 (see `animate_shots`)."""
    return animate_shots(pipe, [prompt], [keyframe], [seed], steps, cfg_scale, num_frames)[0]
