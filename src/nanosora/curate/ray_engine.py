"""The Ray engine (``--engine ray`` or ``executor_type: ray``): the same rows through Ray Data.

Rows go into a Ray Dataset; a pool of ``np`` actors (each builds the pass's operators once, like
a local worker) maps them one at a time, and the driver streams results back and journals them
exactly as the local engine does, so a Ray run resumes, and ends in the same output rows.
Connects to ``RAY_ADDRESS`` (or ``ray_address`` in the recipe) when set; otherwise starts a local
instance with ``np`` CPUs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from nanosora.curate.pipeline import PassSpec, RowProcessor


class _Worker:
    """A Ray Data actor: one `RowProcessor`, reused for every batch."""

    def __init__(self, spec: PassSpec) -> None:
        import cv2

        cv2.setNumThreads(1)
        self.processor = RowProcessor(spec)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        out = []
        for row_id, row in zip(batch["id"], batch["row"], strict=True):
            out.append(json.dumps(self.processor(str(row_id), json.loads(row))))
        return {"result": out}


def start_ray(np: int, address: str | None = None) -> None:
    """Connect to a cluster, or start a local instance with ``np`` CPUs (once per process)."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=np, include_dashboard=False, log_to_driver=False)


def run_ray(
    items: list[tuple[str, dict[str, Any]]], spec: PassSpec, np: int
) -> Iterator[dict[str, Any]]:
    """Process ``items`` on Ray with ``np`` actors; yields results as the driver receives them."""
    if not items:
        return
    import ray.data

    start_ray(np)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the runner draws its own bar
    records = [{"id": row_id, "row": json.dumps(row)} for row_id, row in items]
    # One row per block and per batch: rows cost seconds each, so balance beats batching.
    ds = ray.data.from_items(records, override_num_blocks=len(records))
    ds = ds.map_batches(_Worker, fn_constructor_args=(spec,), batch_size=1,
                        concurrency=np, num_cpus=1)  # fmt: skip
    for record in ds.iter_rows():
        yield json.loads(record["result"])
