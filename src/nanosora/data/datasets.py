"""Torch datasets over a manifest: clip windows of 4k+1 frames at a target fps and size.

``ClipWindowDataset`` returns, per manifest row, ``{"video": (C, T, H, W) float32 in [-1, 1],
"text": str, "index": int}``: what the VAE trainer, the latent cache and evaluation read, from
the shapes world and from real video alike.

Per item:

1. the row's clip is ``[start, end)`` of ``path`` (the whole file when they are empty);
2. a window of ``num_frames / fps`` seconds starts at the clip's start (``window="start"``) or at a
   uniformly random time that keeps it inside the clip (``"random"``);
3. frames are read at ``fps`` (nearest source frame per target time, ``nanosora.video.io``); a clip
   shorter than the window repeats its last frame;
4. each frame is cropped to the target aspect ratio (centre, or a random offset kept for the whole
   clip; ``crop="none"`` only resizes) and resized to (H, W): the target is ``(height, width)``,
   or the row's own (T, H, W) after ``set_shapes`` (its bucket's, see ``nanosora.data.buckets``);
5. the caption is ``text``, or with ``caption="random"`` one of the row's ``captions``.

Randomness is a function of ``(seed, epoch, index)`` (``set_epoch``; the trainers pass the
optimizer step), so DataLoader workers and resumed runs see the same windows. A file that cannot
be decoded raises ``VideoError`` naming the manifest, the row and the file; the trainer decides
whether to skip it.

Small datasets (the shapes world) are decoded once and kept as uint8 in RAM (``in_memory``):
decoding an mp4 costs more than a VAE step's data on a CPU. ``clip_dataset`` and
``bucketed_clips`` build the dataset a ``DataConfig`` describes, for the VAE trainer and the
latent cache alike.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from nanosora.config import DataConfig, TrainConfig
from nanosora.data.buckets import TokenBudgetBatchSampler, tokens_of
from nanosora.data.manifest import read_manifest, resolve_paths
from nanosora.video.io import VideoError, probe, read_video, resize_frame


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, C) -> float32 (C, T, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """float (C, T, H, W) in [-1, 1] -> uint8 (T, H, W, C) (values outside are clipped)."""
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


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
        crop: Literal["none", "center", "random"] = "center",
        window: Literal["random", "start"] = "start",
        caption: Literal["text", "random"] = "text",
        seed: int = 0,
        in_memory: bool = False,
    ) -> None:
        if num_frames < 1 or (num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 4k+1 (1, 5, 9, 17, ...), got {num_frames}")
        if crop not in ("none", "center", "random") or window not in ("random", "start"):
            raise ValueError(
                f"crop must be none|center|random and window random|start: {crop}, {window}"
            )
        if caption not in ("text", "random") or fps <= 0:
            raise ValueError(f"caption must be text|random and fps > 0: {caption}, {fps}")
        if in_memory and crop == "random":
            raise ValueError("in_memory keeps one copy per clip: no random crops")
        self.manifest_path = Path(manifest_path)
        df = read_manifest(self.manifest_path).reset_index(drop=True)
        self.df = df
        self.paths = resolve_paths(df, self.manifest_path).tolist()
        self.texts = df["text"].astype(str).tolist()
        self.captions = [_captions(c) for c in df["captions"]] if "captions" in df else None
        starts = df["start"] if "start" in df else [None] * len(df)
        ends = df["end"] if "end" in df else [None] * len(df)
        self.spans = [(_number(s) or 0.0, _number(e)) for s, e in zip(starts, ends, strict=True)]
        self.num_frames, self.size, self.fps = num_frames, (height, width), float(fps)
        self.crop, self.window, self.caption, self.seed = crop, window, caption, seed
        self.epoch = 0
        self.shapes: list[tuple[int, int, int]] | None = None
        self._durations: dict[str, float] = {}
        self._frames: dict[int, np.ndarray] | None = {} if in_memory else None

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Change the random windows, crops and captions (a new epoch)."""
        self.epoch = epoch

    def clip_sizes(self) -> np.ndarray:
        """(n, 3) per row: frames the clip holds at ``fps``, its height and width -- what bucket
        assignment needs. From the manifest's start/end or duration and height/width columns
        (``nanosora clips`` writes them), else probed (slow on big manifests)."""
        df, out = self.df, np.zeros((len(self), 3), dtype=np.int64)
        known = "height" in df and "width" in df and df["height"].notna().all()
        for i in range(len(self)):
            start, end = self.spans[i]
            span = None if end is None else end - start
            if span is None and "duration" in df and _number(df["duration"].iat[i]) is not None:
                span = _number(df["duration"].iat[i]) - start
            if known:
                h, w = int(df["height"].iat[i]), int(df["width"].iat[i])
            if span is None or not known:
                info = probe(self.paths[i])
                span = info.duration - start if span is None else span
                h, w = info.height, info.width
            # read_video keeps the target times start + k / fps inside [start, end)
            out[i] = (max(1, math.ceil(span * self.fps - 1e-6)), h, w)
        return out

    def set_shapes(self, shapes: Sequence[tuple[int, int, int]]) -> None:
        """Give item i the (T, H, W) ``shapes[i]`` (its bucket's; see ``bucketed_clips``)."""
        if len(shapes) != len(self):
            raise ValueError(f"{len(shapes)} shapes for {len(self)} clips")
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        if self._frames is not None:
            self._frames.clear()

    def target_shape(self, index: int) -> tuple[int, int, int]:
        """(T, H, W) of item ``index``: its own shape (``set_shapes``), or the dataset's."""
        if self.shapes is not None:
            return self.shapes[index]
        return (self.num_frames, *self.size)

    def target_size(self, index: int) -> tuple[int, int]:
        """(H, W) of item ``index``."""
        return self.target_shape(index)[1:]

    def frames(self, index: int) -> np.ndarray:
        """uint8 (T, H, W, C) frames of item ``index`` at the current epoch (or step)."""
        if self._frames is not None and self.window == "start" and index in self._frames:
            return self._frames[index]  # the common in-memory case: nothing to draw
        rng = np.random.default_rng((self.seed, self.epoch, index))
        num_frames = self.target_shape(index)[0]
        if self._frames is not None and self.window == "random":
            # In memory, a random window is a slice of the whole clip decoded once at fps.
            if index not in self._frames:
                self._frames[index] = self._decode(index, self.spans[index], None, rng)
            clip = self._frames[index]
            first = int(rng.integers(0, max(0, len(clip) - num_frames) + 1))
            return self._pad(clip[first : first + num_frames], num_frames)
        frames = self._decode(index, self._window(index, num_frames, rng), num_frames, rng)
        if self._frames is not None:
            self._frames[index] = frames
        return frames

    def _decode(
        self,
        index: int,
        span: tuple[float, float | None],
        num_frames: int | None,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """uint8 (T, H, W, C) frames of ``span`` at fps, cropped and resized to the item's size:
        ``num_frames`` of them (a short clip holds its last frame), or all with None."""
        try:
            frames = read_video(
                self.paths[index], start=span[0], end=span[1], fps=self.fps, max_frames=num_frames
            )
        except VideoError as e:
            raise VideoError(f"{self.manifest_path} row {index}: {e}") from e
        if len(frames) == 0:
            raise VideoError(f"{self.manifest_path} row {index}: {self.paths[index]} has no frames")
        frames = self._pad(frames, num_frames or len(frames))
        return self._crop_resize(frames, self.target_size(index), rng)

    @staticmethod
    def _pad(frames: np.ndarray, num_frames: int) -> np.ndarray:
        """``frames`` made ``num_frames`` long by holding the last one (a short clip)."""
        if len(frames) >= num_frames:
            return frames
        return np.concatenate([frames, np.repeat(frames[-1:], num_frames - len(frames), axis=0)])

    def preload(self, progress: bool = True) -> None:
        """Decode every clip now (in memory only): a training loop then never waits on a
        decoder, and a broken file fails before the first step."""
        if self._frames is None:
            return
        rows = range(len(self))
        if progress:
            rows = tqdm(rows, desc=f"decoding {self.manifest_path.name}", unit="clip")
        for i in rows:
            self.frames(i)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, index, 1))
        video = frames_to_tensor(self.frames(index))
        return {"video": video, "text": self._text(index, rng), "index": index}

    def _window(
        self, index: int, num_frames: int, rng: np.random.Generator
    ) -> tuple[float, float | None]:
        """Start of the window and end of the clip (reading stops at either bound)."""
        start, end = self.spans[index]
        if self.window == "start":
            return start, end
        if end is None:
            path = self.paths[index]
            if path not in self._durations:
                self._durations[path] = probe(path).duration
            end = self._durations[path]
        slack = max(0.0, (end - start) - num_frames / self.fps)
        return start + float(rng.uniform(0.0, slack)), end

    def _crop_resize(
        self, frames: np.ndarray, size: tuple[int, int], rng: np.random.Generator
    ) -> np.ndarray:
        """Crop (T, H0, W0, 3) to the aspect of ``size`` (centre or random), then resize."""
        if self.crop == "none":
            return np.stack([resize_frame(np.ascontiguousarray(f), size) for f in frames])
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


def clip_dataset(
    manifest: str | Path, d: DataConfig, seed: int = 0, progress: bool = True
) -> ClipWindowDataset:
    """The clips ``d`` describes, with its windows, crops and captions (buckets are added by
    ``bucketed_clips``); decoded now when ``d.in_memory``."""
    clips = ClipWindowDataset(
        manifest, d.num_frames, d.height, d.width, d.fps, crop=d.crop, window=d.window,
        caption=d.caption, seed=seed, in_memory=d.in_memory,
    )  # fmt: skip
    clips.preload(progress)
    return clips


def bucketed_clips(
    manifest: str | Path,
    d: DataConfig,
    batch_size: int,
    token_budget: int = 0,
    seed: int = 0,
    multiple_of: int = 1,
) -> tuple[ClipWindowDataset, TokenBudgetBatchSampler]:
    """Clips of ``manifest`` in ``d.buckets``, and the sampler of their one-shape batches.

    Each clip gets the (T, H, W) of the bucket nearest its aspect ratio that it fills without
    upsampling or looping; a batch holds ``token_budget // tokens`` clips of one bucket
    (``token_budget=0``: ``batch_size`` clips of the ``(num_frames, height, width)`` shape, and
    proportionally more of smaller buckets). Clips no bucket holds stop here (``d.unfit="error"``)
    or are skipped and counted in the printed summary (``"drop"``), and so are empty buckets.
    """
    if not d.buckets:
        raise ValueError("bucketed_clips needs data.buckets, a list of (T, H, W)")
    clips = clip_dataset(manifest, d, seed)
    budget = token_budget or batch_size * tokens_of((d.num_frames, d.height, d.width))
    sampler = TokenBudgetBatchSampler(
        clips.clip_sizes(), d.buckets, budget, multiple_of=multiple_of, unfit=d.unfit, seed=seed
    )
    print(f"buckets of {manifest} (token budget {budget}):\n{sampler.summary()}")
    first = sampler.buckets[0]  # dropped clips are never drawn; any shape will do
    clips.set_shapes([sampler.buckets[b] if b >= 0 else first for b in sampler.bucket_of])
    return clips, sampler


def one_shape(d: DataConfig, num_frames: int = 0) -> DataConfig:
    """``d`` for calibration, sample GIFs and evaluation: every clip at (num_frames, height,
    width) from its first window, centre-cropped where ``d`` crops at random (``d`` itself when
    it already is that). ``num_frames``: another window length than ``d``'s (0: ``d``'s)."""
    crop = "center" if d.crop == "random" else d.crop
    frames = num_frames or d.num_frames
    return replace(d, buckets=(), window="start", crop=crop, num_frames=frames)


class TrainingClips(NamedTuple):
    """What a trainer reads (``training_clips``)."""

    clips: Dataset  # batches are drawn from these
    batches: TokenBudgetBatchSampler | None  # one-shape batches by step (buckets), else None
    view: Dataset  # the training clips at one shape: latent calibration, sample GIFs
    val: Dataset  # held-out clips at that shape (``view`` without a validation manifest)


def training_clips(
    d: DataConfig,
    t: TrainConfig,
    val_manifest: str = "",
    multiple_of: int = 1,
    eval_frames: int = 0,
) -> TrainingClips:
    """The training, view and validation clips of ``d`` (``t`` gives batch size, token budget
    and seed; ``multiple_of`` the data-parallel ranks a bucketed batch splits over).

    ``eval_frames``: the view and validation clips' length when it is not ``d.num_frames`` (a
    VAE trained on short windows is calibrated and evaluated at the DiT's clip length). Clips
    of another shape than the training ones are decoded when read: calibration, the sample GIFs
    and the evaluation read each one once or twice."""
    if not d.manifest:
        raise ValueError("data.manifest is empty: give the training clips' manifest")
    if d.buckets:
        clips, batches = bucketed_clips(
            d.manifest, d, t.batch_size, t.token_budget, t.seed, multiple_of
        )
    else:
        clips, batches = clip_dataset(d.manifest, d, t.seed), None
    fixed = one_shape(d, eval_frames)
    lazy = replace(fixed, in_memory=False)
    view = clips if fixed == d else clip_dataset(d.manifest, lazy, t.seed)
    val = clip_dataset(val_manifest, lazy, t.seed) if val_manifest else view
    return TrainingClips(clips, batches, view, val)


def load_batch(clips: Dataset, indices: Sequence[int], step: int) -> torch.Tensor:
    """(B, C, T, H, W) of ``indices`` for optimizer step ``step``: random windows, crops and
    captions are drawn from (seed, step, index), so a resumed run reads the same pixels."""
    clips.set_epoch(step)
    return torch.stack([clips[i]["video"] for i in indices])
