"""Animation: each shot's keyframe and prompt become a clip.

Two ways, chosen with `--animate`:

- `i2v` (image-to-video): the keyframe is the clip's first frame. It is encoded by the causal VAE
  as the first latent frame, which stays clean (noise level 0) while the model samples the rest
  (first-frame conditioning, `Pipeline.generate(prefix=...)`), so the motion starts from the
  picture in the storyboard, and a keyframe the user swaps in drives its shot.
- `t2v` (text-to-video): the clip is sampled from the prompt alone; the keyframe is only the
  storyboard's picture.

`auto` (the default) is `i2v` whenever the clip has frames beyond the keyframe's latent frame
(4k+1 frames with k >= 1). Every nanosora DiT takes per-frame noise levels, but only a model
trained with frame masks (`flow.cond_prob` > 0, as the shipped one is) continues a given frame
well; for another model pass `--animate t2v`. For a scenes model `auto` is `t2v`: its shots are
events (a bounce, a push, a pass behind, a colour change) whose layout at the first frame is part
of the event, and a still drawn on its own would pin the clip to a layout that may not allow it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from nanosora.pipeline import Pipeline
from nanosora.story.cast import SCENES
from nanosora.story.schema import StoryError

AnimateMode = Literal["auto", "i2v", "t2v"]
ANIMATE_CHOICES = ("auto", "i2v", "t2v")


def resolve_mode(mode: str, num_frames: int, vocabulary: str = "") -> Literal["i2v", "t2v"]:
    """The animation `mode` ('auto', 'i2v' or 't2v') for clips of `num_frames` frames of a model
    of `vocabulary` (scenes: auto is t2v)."""
    if mode not in ANIMATE_CHOICES:
        raise StoryError(f"--animate must be one of {', '.join(ANIMATE_CHOICES)}, not {mode!r}")
    if mode == "t2v" or mode == "auto" and vocabulary == SCENES:
        return "t2v"
    if num_frames < 5:  # one latent frame: the keyframe would be the whole clip
        if mode == "i2v":
            raise StoryError(
                f"--animate i2v needs clips of 5 or more frames (the keyframe is the first of "
                f"4k+1), not {num_frames}; pass --animate t2v"
            )
        return "t2v"
    return "i2v"


def describe(mode: Literal["i2v", "t2v"]) -> str:
    """One line for the log."""
    if mode == "i2v":
        return (
            "image-to-video: each clip starts from its shot's keyframe (first-frame conditioning)"
        )
    return "text-to-video: each clip from its prompt alone (the keyframes are the storyboard's)"


def animate_shots(
    pipe: Pipeline,
    prompts: list[str],
    keyframes: list[np.ndarray] | None,
    seeds: list[int],
    steps: int | None = None,
    cfg_scale: float | None = None,
    num_frames: int | None = None,
) -> list[np.ndarray]:
    """Clips `(T, H, W, 3)` uint8, one per shot, batched; shot i uses noise seed `seeds[i]`.

    `keyframes`: uint8 `(H, W, 3)` first frames at the pipeline's size (`load_keyframe`), one
    per shot, for image-to-video; None for text-to-video. The pipeline seeds each prompt's noise
    on its own, so a shot's clip does not depend on which shots share its batch: batching is
    only for speed, and a retried shot comes out the same.
    """
    if len(prompts) != len(seeds) or (keyframes is not None and len(keyframes) != len(prompts)):
        n = "no" if keyframes is None else len(keyframes)
        raise ValueError(f"{len(prompts)} prompts, {n} keyframes, {len(seeds)} seeds")
    prefix = None if keyframes is None else np.stack(keyframes)[:, None]  # (B, 1, H, W, 3)
    videos = pipe.generate(
        prompts, steps=steps, cfg_scale=cfg_scale, num_frames=num_frames, seeds=seeds, prefix=prefix
    )
    return list(videos)
