"""Temporal quality of a video without pretrained networks: flicker, motion smoothness, persistence.

All three take uint8 ``(T, H, W, C)`` RGB frames (the file boundary layout) and return one float
per clip, so they run on generated mp4s and on ground truth alike:

- ``flicker``: mean absolute change of the per-channel frame means between consecutive frames,
  in [0, 1] (a fraction of 255). An object moving over a constant background, fully inside the
  canvas, keeps the frame mean constant, so motion scores 0 and only global brightness or colour
  pumping (the usual failure of frame-by-frame decoders) counts. Lower is better.
- ``motion_smoothness``: how well frame t is predicted from frames t-1 and t+1 by motion-compensated
  interpolation (VBench's "motion smoothness" idea, with Farneback optical flow from OpenCV in
  place of a learned interpolator): the mean absolute error in [0, 1]. Constant-velocity motion
  interpolates almost exactly; jitter, teleports and popping objects do not. Lower is better.
- ``object_persistence`` (shapes world): share of frames in which the probe finds the object with
  the clip's colour and shape, each frame read on its own. A vanishing, splitting or morphing
  object lowers it. 1.0 is best.
"""

from __future__ import annotations

import cv2
import numpy as np

from nanosora.shapes.probe import probe_frames


def _check(frames: np.ndarray, min_frames: int) -> None:
    if frames.ndim != 4 or frames.dtype != np.uint8 or frames.shape[0] < min_frames:
        raise ValueError(
            f"expected uint8 (T, H, W, C) frames with T >= {min_frames}, got "
            f"{frames.dtype} {frames.shape}"
        )


def flicker(frames: np.ndarray) -> float:
    """Mean |change| of the per-channel frame means between consecutive frames, in [0, 1]."""
    _check(frames, 2)
    means = frames.reshape(frames.shape[0], -1, frames.shape[-1]).mean(axis=1) / 255.0  # (T, C)
    return float(np.abs(np.diff(means, axis=0)).mean())


def _gray(frame: np.ndarray) -> np.ndarray:
    # Max channel rather than luma: on black backgrounds it treats every hue alike (as the probe).
    return np.ascontiguousarray(frame.max(axis=2))


def _interpolate_middle(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Estimate the frame halfway between ``prev`` and ``nxt`` (float32 (H, W, C), 0-255).

    Farneback flow F from prev to next; the middle frame samples prev at x - F/2 and next at
    x + F/2 (the flow at x stands in for the flow through x: exact for uniform motion), averaged.
    """
    flow = cv2.calcOpticalFlowFarneback(
        _gray(prev), _gray(nxt), None, 0.5, 3, 15, 3, 5, 1.2, 0
    )  # (H, W, 2) px, (dx, dy)
    h, w = prev.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    half = flow / 2
    a = cv2.remap(
        prev, gx - half[..., 0], gy - half[..., 1], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE
    )
    b = cv2.remap(nxt, gx + half[..., 0], gy + half[..., 1], cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    return (a.astype(np.float32) + b.astype(np.float32)) / 2


def motion_smoothness(frames: np.ndarray) -> float:
    """Mean absolute error, in [0, 1], of interpolating each inner frame from its neighbours."""
    _check(frames, 3)
    errors = [
        np.abs(_interpolate_middle(frames[t - 1], frames[t + 1]) - frames[t]).mean() / 255.0
        for t in range(1, frames.shape[0] - 1)
    ]
    return float(np.mean(errors))


def object_persistence(frames: np.ndarray) -> float:
    """Share of frames whose own probe reading has the clip's colour and shape (0 if none found)."""
    _check(frames, 1)
    clip = probe_frames(frames)
    if clip.found_frames == 0:
        return 0.0
    same = 0
    for t in range(frames.shape[0]):
        r = probe_frames(frames[t : t + 1])
        # A single frame's shape reading is as reliable as the clip's: the cues are per frame.
        same += r.found_frames == 1 and r.color == clip.color and r.shape == clip.shape
    return same / frames.shape[0]


def temporal_metrics(frames: np.ndarray) -> dict[str, float]:
    """``{"flicker", "motion_smoothness", "object_persistence"}`` of one clip (see module doc);
    NaN where the clip is too short for a metric (flicker needs 2 frames, smoothness 3)."""
    T = frames.shape[0]
    return {
        "flicker": flicker(frames) if T >= 2 else float("nan"),
        "motion_smoothness": motion_smoothness(frames) if T >= 3 else float("nan"),
        "object_persistence": object_persistence(frames),
    }
