"""The local engine: a process pool over rows (the default; ``np`` processes, all cores by default).

Workers are spawned, not forked (the parent may hold torch/OpenMP threads that fork can
deadlock), build the pass's operators once, and run with OpenCV single-threaded: parallelism
comes from rows, and nested thread pools on top of it only add contention. Results stream back
in completion order; the caller journals each one as it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from multiprocessing import get_context
from typing import Any

from nanosora.curate.pipeline import PassSpec, RowProcessor

_processor: RowProcessor | None = None


def _init(spec: PassSpec) -> None:
    global _processor
    import cv2

    cv2.setNumThreads(1)
    _processor = RowProcessor(spec)


def _work(item: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    assert _processor is not None, "worker not initialised"
    return _processor(*item)


def run_local(
    items: list[tuple[str, dict[str, Any]]], spec: PassSpec, np: int
) -> Iterator[dict[str, Any]]:
    """Process ``items`` (row id, row) with ``np`` processes; yields results as they finish."""
    if not items:
        return
    if np <= 1:
        processor = RowProcessor(spec)
        for item in items:
            yield processor(*item)
        return
    with get_context("spawn").Pool(np, initializer=_init, initargs=(spec,)) as pool:
        yield from pool.imap_unordered(_work, items, chunksize=1)


Engine = Callable[[list[tuple[str, dict[str, Any]]], PassSpec, int], Iterator[dict[str, Any]]]
