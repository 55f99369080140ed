"""What an operator is: a filter (statistics first, thresholds second), a mapper (one row in, zero
or more rows out) or a deduplicator (per-row keys, grouped over the whole manifest).

A row is a plain ``dict`` of manifest columns (DESIGN.md section 2). Filters write their
statistics as new columns and never touch the others; a filter whose columns are already filled
reuses them (as Data-Juicer reuses ``__dj__stats__``), so thresholds can be re-tuned on a stats
manifest without decoding a single frame again.

Operators that need pixels do not decode: they return a `FrameConsumer` for the clip and the
`RowContext` runs one shared decode pass for all of them (see ``nanosora.curate.frames``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from typing import Any, ClassVar

from nanosora.curate.frames import ClipRange, FrameConsumer, run_pass
from nanosora.video.io import VideoError, probe

Row = dict[str, Any]


class OpError(ValueError):
    """A recipe operator that cannot be built: unknown name, unknown or out-of-range parameter,
    or model weights that are not on disk."""


def missing(value: Any) -> bool:
    """True for None and NaN (pandas' missing cells become NaN floats)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_range(
    op: str, name: str, value: Any, lo: float | None = None, hi: float | None = None
) -> None:
    """Raise OpError naming ``op.name`` unless ``lo <= value <= hi`` (bounds optional)."""
    if not isinstance(value, (int, float, Fraction)) or isinstance(value, bool):
        raise OpError(f"{op}: parameter {name} must be a number, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise OpError(f"{op}: parameter {name}={value} is out of range [{lo}, {hi}]")


def check_choice(op: str, name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raise OpError naming ``op.name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise OpError(f"{op}: parameter {name}={value!r} must be one of {list(choices)}")


def check_order(op: str, lo_name: str, lo: Any, hi_name: str, hi: Any) -> None:
    """Raise OpError if a range's lower bound exceeds its upper bound (the filter would drop all)."""
    if lo is not None and hi is not None and lo > hi:
        raise OpError(f"{op}: {lo_name}={lo} is greater than {hi_name}={hi}")


def range_reason(column: str, value: Any, lo: Any, hi: Any) -> str | None:
    """Why ``value`` is outside the closed range ``[lo, hi]`` (None bounds are open), or None.

    Closed on both ends, as Data-Juicer's ``get_keep_boolean`` with its default intervals.
    """
    if missing(value):
        return f"{column} is missing"
    if lo is not None and value < lo:
        return f"{column}={_fmt(value)} < {_fmt(lo)}"
    if hi is not None and value > hi:
        return f"{column}={_fmt(value)} > {_fmt(hi)}"
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


class Op:
    """Base of every operator. Subclasses are frozen dataclasses whose fields are the recipe
    parameters (Data-Juicer's names where Data-Juicer has the operator)."""

    name: ClassVar[str]
    kind: ClassVar[str]  # "filter", "mapper" or "dedup"
    columns: ClassVar[tuple[str, ...]] = ()  # statistic columns this operator writes

    def consumer(self, clip: ClipRange) -> FrameConsumer | None:
        """A frame consumer for the shared decode pass, or None if this op needs no pixels."""
        return None

    def params(self) -> dict[str, Any]:
        """The operator's parameters (for reports)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]


class Filter(Op):
    """Computes ``columns`` for a row (`compute`), then keeps or drops it (`reason`)."""

    kind = "filter"

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        """Statistics of ``row`` (column -> value)."""
        raise NotImplementedError

    def reason(self, row: Row) -> str | None:
        """Why ``row`` (with this filter's columns filled) is dropped, or None to keep it."""
        raise NotImplementedError


class Mapper(Op):
    """Turns one row into zero or more rows (split, resize, clean text)."""

    kind = "mapper"

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        raise NotImplementedError


class Deduplicator(Op):
    """Per-row keys (``compute``, parallel), then groups over the whole table (``drop``)."""

    kind = "dedup"

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        raise NotImplementedError

    def drop(self, rows: list[Row]) -> dict[int, str]:
        """Positions in ``rows`` to drop -> reason; one representative of each group stays."""
        raise NotImplementedError


PROBE_COLUMNS = ("num_frames", "fps", "height", "width", "duration", "codec", "aspect_ratio")


class RowContext:
    """Per-row lazy state: the resolved file, its probe, and cached frame-pass results.

    ``root`` is the folder relative paths are relative to; ``out_dir`` where mappers that write
    files put them.

    ``lookahead`` (set by the pipeline before each operator) lists the frame operators that
    follow in the recipe up to the next mapper: when one of them needs frames, all of them are
    fed in the same decode pass.
    """

    def __init__(self, row: Row, root: str, out_dir: str = ".") -> None:
        self.row, self.root, self.out_dir = row, root, out_dir
        self.lookahead: list[Op] = []
        self._clip: ClipRange | None = None
        self._results: dict[int, dict[str, Any]] = {}

    @property
    def path(self) -> str:
        """The row's video as an absolute path (relative paths are relative to ``root``)."""
        return os.path.normpath(os.path.join(self.root, os.path.expanduser(self.row["path"])))

    @property
    def clip(self) -> ClipRange:
        """The probed clip; fills the row's missing probe columns on first use."""
        if self._clip is None:
            self._clip = probe_row(self.row, self.path)
        return self._clip

    def frame_stats(self, op: Op) -> dict[str, Any]:
        """Result of ``op``'s frame consumer, running one pass for it and its lookahead."""
        if id(op) not in self._results:
            clip = self.clip
            candidates = [op] + [o for o in self.lookahead if o is not op
                                 and id(o) not in self._results and not has_stats(o, self.row)]  # fmt: skip
            pairs = [(o, o.consumer(clip)) for o in candidates]
            pairs = [(o, c) for o, c in pairs if c is not None]
            results = run_pass(clip, [c for _, c in pairs])  # type: ignore[misc]
            for (o, _), result in zip(pairs, results, strict=True):
                self._results[id(o)] = result
        return self._results[id(op)]


def has_stats(op: Op, row: Row) -> bool:
    """True if ``op`` writes columns and ``row`` already has all of them filled."""
    return bool(op.columns) and all(not missing(row.get(c)) for c in op.columns)


def probe_row(row: Row, path: str) -> ClipRange:
    """Probe ``path``, clamp the row's ``[start, end)`` to the file, fill missing probe columns.

    Existing cells are kept (stages never rewrite columns); for a clip inside a longer file,
    ``duration`` and ``num_frames`` describe the clip, not the file.
    """
    info = probe(path)
    start = 0.0 if missing(row.get("start")) else float(row["start"])
    end = None if missing(row.get("end")) else float(row["end"])
    if start >= info.duration or (end is not None and end <= start):
        raise VideoError(f"{path}: empty range [{start}, {end}) in a {info.duration:.3f} s video")
    stop = info.duration if end is None else min(end, info.duration)
    duration = stop - start if (start > 0 or end is not None) else info.duration
    num_frames = (
        info.num_frames if duration == info.duration else max(1, round(duration * info.fps))
    )
    values = {"num_frames": num_frames, "fps": info.fps, "height": info.height,
              "width": info.width, "duration": duration, "codec": info.codec,
              "aspect_ratio": info.height / info.width}  # fmt: skip
    for key, value in values.items():
        if missing(row.get(key)):
            row[key] = value
    return ClipRange(path, start, end, info.fps, num_frames, info.width, info.height)
