"""Duplicates over the whole manifest: exact (stream hash) and near (perceptual hashes).

Keys are computed per row in the parallel pass; grouping needs every row, so the recipe runner
runs it between passes. Each group keeps one representative: the largest frame area, then the
longest clip, then the first in manifest order (deterministic whatever the engine).

- ``video_deduplicator`` (Data-Juicer's name; it hashes the file bytes with MD5): we hash the
  video stream's packets (``stream_hash``), so a remux or a copy with other metadata or audio is
  still found; rows that cut different ranges of one file are not duplicates (the range is part
  of the key). ``ray_video_deduplicator`` (Data-Juicer's Redis-backed variant) means the same here.
- ``video_near_deduplicator`` (ours): a 64-bit DCT perceptual hash (pHash: 32x32 grey, top-left
  8x8 DCT coefficients against their median) of ``frame_num`` frames spread evenly over the clip;
  two clips are near-duplicates when the Hamming distance of their concatenated hashes is at most
  ``max_distance`` bits per frame on average. Candidates are found by banding (LSH): hashes
  equal on any band are compared, so the cost stays near-linear in the manifest size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nanosora.curate.frames import ClipRange, stream_digest
from nanosora.curate.ops.base import Deduplicator, Row, RowContext, check_range, missing


def _representative_order(rows: list[Row], members: list[int]) -> list[int]:
    """``members`` sorted best-first: largest area, longest, earliest."""

    def key(i: int) -> tuple[float, float, int]:
        r = rows[i]
        area = 0.0 if missing(r.get("width")) else float(r["width"]) * float(r["height"])
        duration = 0.0 if missing(r.get("duration")) else float(r["duration"])
        return (-area, -duration, i)

    return sorted(members, key=key)


def _drop_groups(
    rows: list[Row], groups: list[list[int]], what: str, column: str
) -> dict[int, str]:
    drops = {}
    for group in groups:
        if len(group) < 2:
            continue
        keep, *rest = _representative_order(rows, group)
        for i in rest:
            drops[i] = f"{what} of row {rows[keep].get('curate_id', keep)} ({column})"
    return drops


@dataclass(frozen=True)
class VideoDeduplicator(Deduplicator):
    """Exact duplicates by stream hash (+ the row's time range, + text if ``consider_text``)."""

    name = "video_deduplicator"
    columns = ("stream_hash",)
    consider_text: bool = False
    redis_host: Any = None  # ray_video_deduplicator's service; not needed here
    redis_port: Any = None

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        clip = ctx.clip
        return {"stream_hash": stream_digest(clip.path)}

    def drop(self, rows: list[Row]) -> dict[int, str]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, r in enumerate(rows):
            key = (r["stream_hash"], _cell(r.get("start")), _cell(r.get("end")))
            key += (r["text"],) if self.consider_text else ()
            groups.setdefault(key, []).append(i)
        return _drop_groups(rows, list(groups.values()), "exact duplicate", "stream_hash")


def _cell(value: Any) -> Any:
    return None if missing(value) else round(float(value), 6)


def phash(gray: np.ndarray) -> int:
    """64-bit DCT perceptual hash of a grey ``(H, W)`` image (Zauner 2010, as in imagehash)."""
    small = cv2.resize(gray.astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small)[:8, :8]
    bits = (low > np.median(low)).flatten()
    return int(np.packbits(bits).view(">u8")[0])


class HashConsumer:
    """pHash of ``frame_num`` frames spread evenly over the clip."""

    def __init__(self, clip: ClipRange, frame_num: int) -> None:
        n = max(1, clip.num_frames)
        self.picks = set(np.linspace(0, n - 1, frame_num).round().astype(int).tolist())
        self.hashes: list[int] = []
        self.frame_num = frame_num

    def want(self, index: int) -> tuple[int, int] | None:
        return (64, 64) if index in self.picks else None

    def feed(self, index: int, t: float, frame: np.ndarray) -> None:
        self.hashes.append(phash(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)))

    def result(self) -> dict[str, Any]:
        # A clip shorter than frame_num repeats its last hash so every key has the same length.
        hashes = (self.hashes + self.hashes[-1:] * self.frame_num)[: self.frame_num]
        return {"phash": "".join(f"{h:016x}" for h in hashes)}


@dataclass(frozen=True)
class VideoNearDeduplicator(Deduplicator):
    """Near duplicates by perceptual hashes of sampled frames (module docstring)."""

    name = "video_near_deduplicator"
    columns = ("phash",)
    frame_num: int = 4
    max_distance: float = 6.0  # mean Hamming distance per 64-bit frame hash
    bands: int = 8

    def __post_init__(self) -> None:
        check_range(self.name, "frame_num", self.frame_num, 1, 64)
        check_range(self.name, "max_distance", self.max_distance, 0, 64)
        check_range(self.name, "bands", self.bands, 1, 64)

    def consumer(self, clip: ClipRange) -> HashConsumer:
        return HashConsumer(clip, self.frame_num)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        return ctx.frame_stats(self)

    def drop(self, rows: list[Row]) -> dict[int, str]:
        if not rows:
            return {}
        bits = np.unpackbits(np.frombuffer(b"".join(bytes.fromhex(r["phash"]) for r in rows),
                                           np.uint8).reshape(len(rows), -1), axis=1)  # fmt: skip
        parent = list(range(len(rows)))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        limit = self.max_distance * self.frame_num
        for band in np.array_split(np.arange(bits.shape[1]), self.bands):
            buckets: dict[bytes, list[int]] = {}
            for i, key in enumerate(np.packbits(bits[:, band], axis=1)):
                buckets.setdefault(key.tobytes(), []).append(i)
            for members in buckets.values():
                for j in members[1:]:
                    if np.count_nonzero(bits[members[0]] != bits[j]) <= limit:
                        parent[find(j)] = find(members[0])
        groups: dict[int, list[int]] = {}
        for i in range(len(rows)):
            groups.setdefault(find(i), []).append(i)
        return _drop_groups(rows, list(groups.values()), "near duplicate", "phash")
