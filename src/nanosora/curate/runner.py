"""`nanosora curate --recipe recipe.yaml`: run a Data-Juicer-style recipe over a manifest.

1. Load and check the recipe (every problem named before any work starts).
2. Read the dataset (manifest or Data-Juicer jsonl); every row gets a ``curate_id`` (its input
   position; pieces of a split row get ``<id>.<k>``).
3. For each pass (the recipe cut at deduplicators): skip rows already in the pass's journal,
   run the rest on the engine (local process pool or Ray), journal each result as it arrives,
   then rebuild the pass's output from the journal in input order and group duplicates.
4. Write the output (``export_path``), ``<export>.rejects.jsonl`` and ``<export>.summary.json``.

Killing the run at any point and running the same command again finishes it with exactly the
rows an uninterrupted run writes (the journals live in ``.<export name>.curate/`` beside the
output; a changed recipe or dataset starts them over).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nanosora.curate import journal as jn
from nanosora.curate.dataset import read_dataset, write_dataset
from nanosora.curate.local import run_local
from nanosora.curate.pipeline import PassSpec, jsonable, result_line, split_passes
from nanosora.curate.ray_engine import run_ray
from nanosora.curate.recipe import Recipe, RecipeError, load_recipe
from nanosora.curate.rejects import count_by_op, write_rejects

EngineName = Literal["local", "ray"]


@dataclass(frozen=True)
class CurateConfig:
    """One curation run; unset fields come from the recipe."""

    recipe: Path
    engine: EngineName | None = None  # None: "ray" if the recipe says executor_type: ray
    np: int | None = None  # worker processes / Ray actors; None: recipe's np, else all cores
    dataset: Path | None = None  # overrides the recipe's dataset_path
    export: Path | None = None  # overrides the recipe's export_path
    keep_all: bool = False  # statistics only: compute every filter's columns, drop nothing
    progress: bool = True

    def __post_init__(self) -> None:
        if self.engine not in (None, "local", "ray"):
            raise ValueError(f"engine must be local or ray, got {self.engine!r}")
        if self.np is not None and self.np < 1:
            raise ValueError(f"np must be >= 1, got {self.np}")


@dataclass(frozen=True)
class Plan:
    """The resolved run: recipe, paths, engine and parallelism."""

    recipe: Recipe
    dataset: Path
    export: Path
    engine: EngineName
    np: int

    @property
    def work_dir(self) -> Path:
        return self.export.parent / f".{self.export.name}.curate"

    def side(self, what: str, suffix: str) -> Path:
        return self.export.with_name(f"{self.export.stem}.{what}{suffix}")


def plan(cfg: CurateConfig) -> Plan:
    """Load the recipe and resolve everything the run needs (raises before any work)."""
    recipe = load_recipe(cfg.recipe)
    dataset = cfg.dataset or recipe.dataset_path
    export = cfg.export or recipe.export_path
    if dataset is None or export is None:
        raise RecipeError(
            f"{cfg.recipe}: needs dataset_path and export_path (or --dataset/--export)"
        )
    engine: EngineName = cfg.engine or ("ray" if recipe.executor_type == "ray" else "local")
    np = cfg.np or recipe.np or os.cpu_count() or 1
    return Plan(recipe, Path(dataset), Path(export), engine, np)


def _engine(name: EngineName) -> Any:
    match name:
        case "ray":
            return run_ray
        case _:
            return run_local


def run_pass(p: Plan, k: int, items: list[tuple[str, dict[str, Any]]], spec: PassSpec,
             progress: bool) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """Run one pass, resuming from its journal; returns (records in input order, rows reused)."""
    from tqdm import tqdm

    journal = jn.Journal(p.work_dir / f"pass{k}.jsonl")
    done = journal.load()
    todo = [item for item in items if item[0] not in done]
    desc = f"curate pass {k + 1}" if k else "curate"
    bar = tqdm(total=len(todo), desc=desc, unit="row", disable=not progress, smoothing=0.1)
    kept = dropped = 0
    try:
        for record in _engine(p.engine)(todo, spec, p.np):
            journal.append(result_line(record))
            done[str(record["id"])] = record
            kept, dropped = kept + len(record["rows"]), dropped + len(record["rejects"])
            bar.set_postfix(kept=kept, dropped=dropped, refresh=False)
            bar.update()
    finally:
        bar.close()
        journal.close()
    return [done[row_id] for row_id, _ in items], len(items) - len(todo)


def main(cfg: CurateConfig) -> Path:
    """Run the recipe (module docstring); returns the output path."""
    t0 = time.perf_counter()
    p = plan(cfg)
    p.export.parent.mkdir(parents=True, exist_ok=True)
    df, root, dj = read_dataset(p.dataset, p.export.parent)
    rows = [jsonable(r) for r in df.to_dict(orient="records")]
    passes = split_passes(p.recipe.ops)
    specs = [[(s.name, s.params) for s in ops] for ops in passes]
    jn.prepare(p.work_dir, jn.fingerprint([specs, cfg.keep_all], rows))
    clips_dir = p.work_dir.parent / f"{p.export.stem}.clips"
    items = [(str(i), row) for i, row in enumerate(rows)]
    rejects: list[dict[str, Any]] = []
    reused = 0
    for k, ops in enumerate(passes):
        spec = PassSpec(ops, root, str(clips_dir.resolve()), cfg.keep_all)
        records, n = run_pass(p, k, items, spec, cfg.progress)
        reused += n
        out = [row for record in records for row in record["rows"]]
        rejects += [r for record in records for r in record["rejects"]]
        last = ops[-1].build() if ops else None
        if last is not None and last.kind == "dedup" and not cfg.keep_all:
            drops = last.drop(out)  # type: ignore[attr-defined]
            rejects += [
                {**out[i], "op": last.name, "reason": why} for i, why in sorted(drops.items())
            ]
            out = [row for i, row in enumerate(out) if i not in drops]
        items = [(row["curate_id"], row) for row in out]
    final = [row for _, row in items]
    write_dataset(final, root, p.export, dj, p.work_dir)
    write_rejects(p.side("rejects", ".jsonl"), rejects)
    summary = _summary(p, len(rows), len(final), rejects, reused, time.perf_counter() - t0)
    p.side("summary", ".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if cfg.progress:
        print(f"curate: {len(rows)} rows in, {len(final)} out, {len(rejects)} rejected "
              f"{summary['rejected_by_op']}, {summary['seconds']:.1f} s -> {p.export}")  # fmt: skip
    return p.export


def _summary(p: Plan, n_in: int, n_out: int, rejects: list[dict[str, Any]], reused: int,
             seconds: float) -> dict[str, Any]:  # fmt: skip
    return {
        "recipe": str(p.recipe.path), "dataset": str(p.dataset), "export": str(p.export),
        "engine": p.engine, "np": p.np, "input_rows": n_in, "output_rows": n_out,
        "rejected_rows": len(rejects), "rejected_by_op": count_by_op(rejects),
        "rows_reused_from_journal": reused, "seconds": round(seconds, 3),
        "input_rows_per_second": round(n_in / seconds, 3) if seconds > 0 else None,
    }  # fmt: skip
