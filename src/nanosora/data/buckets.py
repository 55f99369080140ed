"""Aspect-ratio buckets: batches in which every clip has one (H, W), whatever the source shapes.

Real footage comes in many shapes (16:9, 9:16, 4:3, square). Cropping all of it to one size throws
away most of a portrait frame; instead each clip goes to the bucket whose shape is nearest its own
(in log aspect ratio, so 2:1 and 1:2 are equally far from 1:1), is resized and cropped to that
bucket's (H, W), and batches are drawn from one bucket at a time (Open-Sora and SD-XL do the same).

Aspect ratio here is H / W, as in Open-Sora's ``aspect_ratio`` column.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def assign_buckets(
    aspect_ratios: Sequence[float] | np.ndarray, buckets: Sequence[tuple[int, int]]
) -> np.ndarray:
    """Index of the bucket nearest each aspect ratio (H/W) in log space; unknown (NaN) -> 0."""
    if not buckets:
        raise ValueError("at least one bucket (H, W) is needed")
    ratios = np.asarray(aspect_ratios, dtype=np.float64)
    if np.any(ratios[~np.isnan(ratios)] <= 0):
        raise ValueError("aspect ratios must be positive")
    shapes = np.log([h / w for h, w in buckets])
    distance = np.abs(np.log(np.where(np.isnan(ratios), 1.0, ratios))[:, None] - shapes[None, :])
    chosen = distance.argmin(axis=1)
    chosen[np.isnan(ratios)] = 0  # no size known: the first (default) bucket
    return chosen


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices that share a bucket; every sample once per epoch (unless drop_last).

    Each epoch shuffles the samples inside every bucket, cuts them into batches, and shuffles the
    order of all batches, so buckets interleave instead of running one after another. The order is
    a function of ``(seed, epoch)`` only: ``set_epoch`` makes a resumed run see the same batches.
    Without ``set_epoch``, each new iteration moves to the next epoch.

    Args:
        aspect_ratios: per sample H/W, or per sample ``(H, W)`` sizes.
        buckets: the (H, W) shapes a batch may have.
        batch_size: samples per batch.
        seed: base of the shuffling.
        drop_last: drop each bucket's last, incomplete batch.
    """

    def __init__(
        self,
        aspect_ratios: Sequence[float] | Sequence[tuple[int, int]] | np.ndarray,
        buckets: Sequence[tuple[int, int]],
        batch_size: int,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        values = np.asarray(aspect_ratios, dtype=np.float64)
        ratios = values[:, 0] / values[:, 1] if values.ndim == 2 else values
        self.bucket_of = assign_buckets(ratios, buckets)
        self.buckets = list(buckets)
        self.batch_size, self.seed, self.drop_last = batch_size, seed, drop_last
        self.epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch``'s order on the next iteration."""
        self.epoch, self._epoch_set = epoch, True

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch``, in order."""
        rng = np.random.default_rng((self.seed, epoch))
        out: list[list[int]] = []
        for b in range(len(self.buckets)):
            members = rng.permutation(np.flatnonzero(self.bucket_of == b))
            for i in range(0, len(members), self.batch_size):
                batch = members[i : i + self.batch_size].tolist()
                if len(batch) == self.batch_size or not self.drop_last:
                    out.append(batch)
        order = rng.permutation(len(out))
        return [out[i] for i in order]

    def __iter__(self) -> Iterator[list[int]]:
        epoch = self.epoch
        if not self._epoch_set:
            self.epoch += 1  # the next plain iteration is a new epoch
        self._epoch_set = False
        yield from self.batches(epoch)

    def __len__(self) -> int:
        sizes = np.bincount(self.bucket_of, minlength=len(self.buckets))
        per = (sizes // self.batch_size) if self.drop_last else np.ceil(sizes / self.batch_size)
        return int(per.sum())

    def bucket_size(self, index: int) -> tuple[int, int]:
        """The (H, W) of sample ``index``'s bucket."""
        return self.buckets[int(self.bucket_of[index])]
