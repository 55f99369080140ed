"""Shape buckets: batches in which every clip has one (T, H, W), whatever the source shapes.

Real footage comes in many shapes (16:9, 9:16, 4:3, square) and lengths. Cropping all of it to one
size throws away most of a portrait frame; instead each clip goes to the bucket whose aspect ratio
is nearest its own (in log aspect ratio, so 2:1 and 1:2 are equally far from 1:1) among those it
fills, is cropped and resized to that bucket's shape, and batches are drawn from one bucket at a
time, sized to a token budget (Open-Sora and SD-XL do the same).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


def tokens_of(
    shape: tuple[int, int, int], frames_per_token: int = 4, pixels_per_token: int = 16
) -> int:
    """DiT tokens of a (T, H, W) clip: the causal VAE maps 4k+1 frames to k+1 latent frames and
    8x8 pixels to one latent pixel; a 1x2x2 patch makes 16x16 pixels one token."""
    t, h, w = shape
    return (1 + (t - 1) // frames_per_token) * (h // pixels_per_token) * (w // pixels_per_token)


def fit_buckets(
    sizes: Sequence[tuple[int, int, int]] | np.ndarray,
    buckets: Sequence[tuple[int, int, int]],
    unfit: str = "error",
) -> np.ndarray:
    """Index of each sample's (T, H, W) bucket, -1 where none fits (``TokenBudgetBatchSampler``'s
    rule: nearest log aspect ratio among the buckets it fills, ties to the most tokens).

    ``unfit="error"`` raises on samples no bucket holds, naming one and the buckets; ``"drop"``
    leaves them at -1 for the caller to count and report.
    """
    if unfit not in ("error", "drop"):
        raise ValueError(f"unfit must be 'error' or 'drop', got {unfit!r}")
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1, 3)
    out = np.full(len(sizes), -1, dtype=np.int64)
    for j, (t, h, w) in enumerate(sizes):
        key = None
        for i, (bt, bh, bw) in enumerate(buckets):
            if bt > t or bh * bw > h * w:  # no looping, no upsampling
                continue
            k = (abs(np.log((bh / bw) / (h / w))), -tokens_of((bt, bh, bw)))
            if key is None or k < key:
                out[j], key = i, k
    dropped = np.flatnonzero(out < 0)
    if len(dropped) and unfit == "error":
        i = int(dropped[0])
        raise ValueError(
            f"{len(dropped)} of {len(sizes)} samples fit no bucket, e.g. sample {i} of "
            f"shape {tuple(int(v) for v in sizes[i])} (T, H, W) vs buckets {list(buckets)}: add a "
            "smaller bucket or pass unfit='drop'"
        )
    return out


def describe_buckets(
    bucket_of: np.ndarray,
    buckets: Sequence[tuple[int, int, int]],
    batch_sizes: Sequence[int] | None = None,
) -> str:
    """One line per bucket (samples, and batch size when given), naming the buckets no sample
    fits and the count of samples that fit none (``bucket_of`` -1): nothing is skipped silently."""
    counts = np.bincount(bucket_of[bucket_of >= 0], minlength=len(buckets))
    lines = []
    for i, (b, c) in enumerate(zip(buckets, counts)):
        line = f"bucket {tuple(b)}: {c} samples"
        if batch_sizes is not None:
            n = batch_sizes[i]
            line += f", {n} per batch ({n * tokens_of(b)} tokens)"
        lines.append(line + ("  (empty: no sample fits it)" if c == 0 else ""))
    dropped = int((bucket_of < 0).sum())
    if dropped:
        lines.append(f"{dropped} samples fit no bucket and are skipped")
    return "\n".join(lines)


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Batches of one (T, H, W) each whose token count stays under a budget, so memory is flat.

    A 17x256x256 clip has 5 x 16 x 16 = 1280 tokens, a 256x256 image (T=1) 256, a 49x512x512 clip
    13 x 32 x 32 = 13312: with one batch size for all, either the images waste the GPU or the
    long clips run out of memory. Here each bucket gets ``budget // tokens`` samples per batch
    (rounded down to ``multiple_of``, the data-parallel world size), as Open-Sora's bucket table
    does by hand. Images train jointly with video as T=1 buckets.

    A sample goes to the bucket nearest its aspect ratio (log H/W) among those it can fill without
    upsampling or looping: bucket T <= its frames, bucket H*W <= its H*W; ties go to the most
    tokens. Every sample is in exactly one batch per epoch; with ``multiple_of`` > 1 a bucket's
    last batch is topped up with earlier samples of the same bucket so it splits evenly.

    Args:
        sizes: per sample (num_frames, height, width).
        buckets: the (T, H, W) shapes a batch may have.
        token_budget: most tokens per batch (``tokens_of`` each sample, summed).
        multiple_of: batch sizes are multiples of this (the number of data-parallel ranks).
        unfit: what to do with samples no bucket can hold: "error" or "drop" (counted in
            ``self.dropped`` and reported by ``summary()``).
        seed: base of the shuffling; the order of an epoch depends on (seed, epoch) only.
    """

    def __init__(
        self,
        sizes: Sequence[tuple[int, int, int]] | np.ndarray,
        buckets: Sequence[tuple[int, int, int]],
        token_budget: int,
        multiple_of: int = 1,
        unfit: str = "error",
        seed: int = 0,
    ) -> None:
        if not buckets:
            raise ValueError("at least one bucket (T, H, W) is needed")
        self.buckets = [tuple(int(v) for v in b) for b in buckets]
        self.batch_sizes = []
        for b in self.buckets:
            n = token_budget // tokens_of(b) // multiple_of * multiple_of
            if n < 1:
                raise ValueError(
                    f"bucket {b} has {tokens_of(b)} tokens per sample: a token budget of "
                    f"{token_budget} cannot hold {multiple_of} of them (one per rank); raise the "
                    "budget or remove the bucket"
                )
            self.batch_sizes.append(n)
        self.bucket_of = fit_buckets(sizes, self.buckets, unfit)
        self.dropped = np.flatnonzero(self.bucket_of < 0)
        self.multiple_of, self.seed, self.epoch = multiple_of, seed, 0
        self._memo: tuple[int, list[list[int]]] | None = None

    def summary(self) -> str:
        """One line per bucket (samples, batch size) plus what was dropped or left empty."""
        return describe_buckets(self.bucket_of, self.buckets, self.batch_sizes)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[list[int]]:
        """All batches of ``epoch`` in order; each is one bucket's shape."""
        rng = np.random.default_rng((self.seed, epoch))
        out: list[list[int]] = []
        for b, n in enumerate(self.batch_sizes):
            members = rng.permutation(np.flatnonzero(self.bucket_of == b)).tolist()
            for i in range(0, len(members), n):
                batch = members[i : i + n]
                short = -len(batch) % self.multiple_of
                out.append(batch + (members * short)[:short])  # top up from the same bucket
        return [out[i] for i in rng.permutation(len(out))]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches(self.epoch)

    def batch_at(self, step: int) -> list[int]:
        """Batch of optimizer step ``step`` (epoch ``step // len(self)``): a function of
        (seed, step) alone, so a resumed training run draws the same batches."""
        if len(self) == 0:
            raise ValueError(f"no sample fits any bucket of {self.buckets}: nothing to train on")
        epoch, i = divmod(step, len(self))
        if self._memo is None or self._memo[0] != epoch:
            self._memo = (epoch, self.batches(epoch))
        return self._memo[1][i]

    def __len__(self) -> int:
        counts = np.bincount(self.bucket_of[self.bucket_of >= 0], minlength=len(self.buckets))
        return int(sum(-(-c // n) for c, n in zip(counts, self.batch_sizes)))
