"""Training clips from a manifest of real video: windows of 4k+1 frames at a target fps.

``ClipWindowDataset`` returns, per manifest row, ``{"video": (C, T, H, W) float32 in [-1, 1],
"text": str, "index": int}`` -- the item the VAE and DiT trainers take from the shapes world too.

Per item:

1. the row's clip is ``[start, end)`` of ``path`` (the whole file when they are empty);
2. a window of ``num_frames / fps`` seconds starts at the clip's start (``window="start"``) or at a
   uniformly random time that keeps it inside the clip (``"random"``);
3. frames are read at ``fps`` (nearest source frame per target time, ``nanosora.video.io``); a clip
   shorter than the window repeats its last frame;
4. each frame is cropped to the target aspect ratio (centre, or a random offset kept for the whole
   clip) and resized to (H, W): the target is ``(height, width)``, or the row's bucket size when
   ``buckets`` are given (see ``nanosora.data.buckets``);
5. the caption is ``text``, or with ``caption="random"`` one of the row's ``captions``.

Randomness is a function of ``(seed, epoch, index)`` (``set_epoch``), so DataLoader workers and
resumed runs see the same windows. A file that cannot be decoded raises ``VideoError`` naming the
manifest, the row and the file; the trainer decides whether to skip it.
"""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from nanosora.data.buckets import assign_buckets
from nanosora.data.manifest import read_manifest, resolve_paths
from nanosora.video.io import VideoError, probe, read_video, resize_frame


def _number(value: Any) -> float | None:
    """A manifest cell as a float, or None when missing."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _captions(value: Any) -> list[str]:
    """A ``captions`` cell: a list (parquet/JSONL) or its Python-literal text (CSV)."""
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value]
    if value is None or isinstance(value, float):
        return []
    return [str(c) for c in value]


class ClipWindowDataset(Dataset):
    """Fixed-length clip windows from a real-video manifest (module docstring)."""

    def __init__(
        self,
        manifest_path: str | Path,
        num_frames: int,
        height: int,
        width: int,
        fps: float,
        crop: Literal["center", "random"] = "center",
        window: Literal["random", "start"] = "start",
        caption: Literal["first", "random"] = "first",
        seed: int = 0,
        buckets: list[tuple[int, int]] | None = None,
    ) -> None:
        if num_frames < 1 or (num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, 17, ...), got {num_frames}")
        if crop not in ("center", "random") or window not in ("random", "start"):
            raise ValueError(
                f"crop must be center|random and window random|start: {crop}, {window}"
            )
        if caption not in ("first", "random") or fps <= 0:
            raise ValueError(f"caption must be first|random and fps > 0: {caption}, {fps}")
        self.manifest_path = Path(manifest_path)
        df = read_manifest(self.manifest_path)
        self.paths = resolve_paths(df, self.manifest_path).tolist()
        self.texts = df["text"].astype(str).tolist()
        self.captions = [_captions(c) for c in df["captions"]] if "captions" in df else None
        starts = df["start"] if "start" in df else [None] * len(df)
        ends = df["end"] if "end" in df else [None] * len(df)
        self.spans = [(_number(s) or 0.0, _number(e)) for s, e in zip(starts, ends, strict=True)]
        self.num_frames, self.size, self.fps = num_frames, (height, width), float(fps)
        self.crop, self.window, self.caption, self.seed = crop, window, caption, seed
        self.epoch = 0
        self.buckets = buckets
        self.bucket_of = assign_buckets(self.aspect_ratios(df), buckets) if buckets else None
        self._durations: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Change the random windows, crops and captions (a new epoch)."""
        self.epoch = epoch

    def aspect_ratios(self, df: Any) -> np.ndarray:
        """H/W per row: from the manifest's height/width (``nanosora clips`` writes them), else
        probed (slow for big manifests; run clips or an analyzer first)."""
        if "height" in df and "width" in df and df["height"].notna().all():
            return (df["height"].astype(float) / df["width"].astype(float)).to_numpy()
        out = []
        for path in self.paths:
            info = probe(path)
            out.append(info.height / info.width)
        return np.asarray(out)

    def target_size(self, index: int) -> tuple[int, int]:
        """(H, W) of item ``index``: its bucket's, or the dataset's."""
        if self.buckets is not None and self.bucket_of is not None:
            return self.buckets[int(self.bucket_of[index])]
        return self.size

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        path = self.paths[index]
        try:
            start, end = self._window(index, rng)
            frames = read_video(
                path, start=start, end=end, fps=self.fps, max_frames=self.num_frames
            )
        except VideoError as e:
            raise VideoError(f"{self.manifest_path} row {index}: {e}") from e
        if len(frames) < self.num_frames:  # a short clip: hold its last frame
            pad = np.repeat(frames[-1:], self.num_frames - len(frames), axis=0)
            frames = np.concatenate([frames, pad])
        frames = self._crop_resize(frames, self.target_size(index), rng)
        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)
        return {"video": video, "text": self._text(index, rng), "index": index}

    def _window(self, index: int, rng: np.random.Generator) -> tuple[float, float | None]:
        """Start of the window and end of the clip (reading stops at either bound)."""
        start, end = self.spans[index]
        if self.window == "start":
            return start, end
        if end is None:
            path = self.paths[index]
            if path not in self._durations:
                self._durations[path] = probe(path).duration
            end = self._durations[path]
        slack = max(0.0, (end - start) - self.num_frames / self.fps)
        return start + float(rng.uniform(0.0, slack)), end

    def _crop_resize(
        self, frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator
    ) -> np.ndarray:
        """Crop (T, H0, W0, 3) to the aspect of ``size`` (centre or random), then resize."""
        h0, w0 = frames.shape[1:3]
        target = size[0] / size[1]
        ch, cw = (
            (min(h0, round(w0 * target)), w0)
            if h0 / w0 > target
            else (h0, min(w0, round(h0 / target)))
        )
        if self.crop == "random":
            top, left = int(rng.integers(0, h0 - ch + 1)), int(rng.integers(0, w0 - cw + 1))
        else:
            top, left = (h0 - ch) // 2, (w0 - cw) // 2
        cropped = frames[:, top : top + ch, left : left + cw]
        return np.stack([resize_frame(np.ascontiguousarray(f), size) for f in cropped])

    def _text(self, index: int, rng: np.random.Generator) -> str:
        if self.caption == "random" and self.captions is not None and self.captions[index]:
            options = self.captions[index]
            return options[int(rng.integers(len(options)))]
        return self.texts[index]
