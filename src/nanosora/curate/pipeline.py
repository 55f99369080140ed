"""Run a recipe's row-wise operators on one input row: the unit of work both engines schedule.

A recipe is cut into passes at each deduplicator (grouping needs every row): a pass runs its
operators row by row, in order, and ends with the deduplicator's per-row keys; the runner then
groups and drops duplicates and feeds the survivors to the next pass.

Within a pass, one input row becomes zero or more output rows (mappers split) plus rejects. Any
failure on a row (unreadable file, undecodable frames, a model error) rejects that row with the
operator and the error and the run goes on: one bad file among a million must not stop it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nanosora.curate.ops.base import Deduplicator, Filter, Op, Row, RowContext, has_stats
from nanosora.curate.recipe import OpSpec


@dataclass(frozen=True)
class PassSpec:
    """What a worker needs to process rows of one pass (picklable, so it crosses processes)."""

    ops: tuple[OpSpec, ...]
    root: str  # folder that relative ``path`` cells are relative to
    out_dir: str  # where mappers that write files put them
    keep_all: bool = False  # statistics only: compute every filter, drop nothing (analyze)


def jsonable(value: Any) -> Any:
    """A cell as plain JSON (numpy scalars and arrays unwrapped, NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return str(value)  # timestamps and other exotic cells: their text survives
    return value


def is_video_op(op: Op) -> bool:
    return op.name.startswith(("video_", "ray_video_"))


def lookaheads(ops: list[Op]) -> list[list[Op]]:
    """For each op, the ops from it up to and including the next mapper (they share a pass)."""
    out = []
    for i in range(len(ops)):
        chain = []
        for op in ops[i:]:
            chain.append(op)
            if op.kind == "mapper" and op is not ops[i]:
                break
        out.append(chain)
    return out


class RowProcessor:
    """Builds the pass's operators once (per worker) and processes rows with them."""

    def __init__(self, spec: PassSpec) -> None:
        self.spec = spec
        self.ops = [s.build() for s in spec.ops]
        self.ahead = lookaheads(self.ops)
        self.video = any(is_video_op(op) for op in self.ops)

    def __call__(self, row_id: str, row: Row) -> dict[str, Any]:
        """Process one row -> ``{"id", "rows": [...], "rejects": [...]}`` (all JSON-ready)."""
        row = {**row, "curate_id": row_id}
        rejects: list[Row] = []
        live = [(row, RowContext(row, self.spec.root, self.spec.out_dir))]
        if self.video:
            try:
                live[0][1].clip  # noqa: B018 -- probe first: bad files are rejected as "probe"
            except Exception as e:  # noqa: BLE001 -- any failure on a bad input rejects the row
                rejects.append(_reject(row, "probe", e))
                live = []
        for i, op in enumerate(self.ops):
            nxt = []
            for r, ctx in live:
                ctx.lookahead = self.ahead[i]
                try:
                    nxt += self._apply(op, r, ctx, rejects)
                except Exception as e:  # noqa: BLE001
                    rejects.append(_reject(r, op.name, e))
            live = nxt
        return {"id": row_id, "rows": [jsonable(r) for r, _ in live],
                "rejects": [jsonable(r) for r in rejects]}  # fmt: skip

    def _apply(self, op: Op, row: Row, ctx: RowContext, rejects: list[Row]) -> list[Any]:
        if isinstance(op, (Filter, Deduplicator)):
            if not has_stats(op, row):
                row.update(op.compute(row, ctx))
            why = op.reason(row) if isinstance(op, Filter) else None
            if why is not None and not self.spec.keep_all:
                rejects.append({**row, "op": op.name, "reason": why})
                return []
            return [(row, ctx)]
        outs = op.map(row, ctx)  # type: ignore[attr-defined]
        if len(outs) == 1 and outs[0] is row:
            return [(row, ctx)]
        base = row["curate_id"]
        children = []
        for k, out in enumerate(outs):
            out["curate_id"] = base if len(outs) == 1 else f"{base}.{k}"
            children.append((out, RowContext(out, ctx.root, ctx.out_dir)))
        return children


def _reject(row: Row, op: str, error: Exception) -> Row:
    return {**row, "op": op, "reason": f"{type(error).__name__}: {error}"}


def split_passes(specs: tuple[OpSpec, ...]) -> list[tuple[OpSpec, ...]]:
    """Cut the recipe after each deduplicator (its grouping needs all rows)."""
    passes: list[tuple[OpSpec, ...]] = []
    current: list[OpSpec] = []
    for spec in specs:
        current.append(spec)
        if spec.build().kind == "dedup":
            passes.append(tuple(current))
            current = []
    if current or not passes:
        passes.append(tuple(current))
    return passes


def result_line(result: dict[str, Any]) -> str:
    """One journal line (no NaN: rows were made JSON-ready)."""
    return json.dumps(result, ensure_ascii=False, allow_nan=False)
