"""Torch datasets over a manifest: fixed-shape clips for the VAE trainer and the latent cache.

``ManifestClips`` decodes each row's time range (``start``/``end`` when present) at the target
fps and size and returns ``{"video": (C, T, H, W) float in [-1, 1], "text": str, "index": int}``.
Small datasets (the shapes world) are decoded once and kept as uint8 in RAM: decoding an mp4 costs
more than a VAE step's data on this CPU.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from nanosora.data.manifest import read_manifest, resolve_paths
from nanosora.video.io import VideoError, read_video


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, C) -> float32 (C, T, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_frames(video: torch.Tensor) -> np.ndarray:
    """float (C, T, H, W) in [-1, 1] -> uint8 (T, H, W, C) (values outside are clipped)."""
    x = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def _optional(row: pd.Series, key: str) -> float | None:
    v = row.get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


class ManifestClips(Dataset):
    """Fixed (T, H, W) clips from a manifest; clips shorter than T are padded with their last frame."""

    def __init__(
        self,
        manifest: str | Path,
        num_frames: int,
        height: int,
        width: int,
        fps: float,
        in_memory: bool = True,
        progress: bool = True,
    ):
        self.manifest_path = Path(manifest)
        self.df = read_manifest(self.manifest_path).reset_index(drop=True)
        self.paths = resolve_paths(self.df, self.manifest_path).tolist()
        self.texts = self.df["text"].astype(str).tolist()
        self.num_frames, self.size, self.fps = num_frames, (height, width), fps
        self._frames: list[np.ndarray] | None = None
        if in_memory:
            rows = range(len(self.df))
            if progress:
                rows = tqdm(rows, desc=f"decoding {self.manifest_path.name}", unit="clip")
            self._frames = [self._decode(i) for i in rows]

    def __len__(self) -> int:
        return len(self.df)

    def _decode(self, index: int) -> np.ndarray:
        row = self.df.iloc[index]
        try:
            frames = read_video(
                self.paths[index],
                start=_optional(row, "start"),
                end=_optional(row, "end"),
                fps=self.fps,
                size=self.size,
                max_frames=self.num_frames,
            )
        except VideoError as e:
            raise VideoError(f"{self.manifest_path} row {index}: {e}") from e
        if len(frames) == 0:
            raise VideoError(f"{self.manifest_path} row {index}: {self.paths[index]} has no frames")
        if len(frames) < self.num_frames:
            pad = np.repeat(frames[-1:], self.num_frames - len(frames), axis=0)
            frames = np.concatenate([frames, pad])
        return frames

    def frames(self, index: int) -> np.ndarray:
        """uint8 (T, H, W, C) frames of one clip."""
        return self._frames[index] if self._frames is not None else self._decode(index)

    def __getitem__(self, index: int) -> dict:
        return {
            "video": frames_to_tensor(self.frames(index)),
            "text": self.texts[index],
            "index": index,
        }
