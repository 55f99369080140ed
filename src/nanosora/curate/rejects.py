"""The rejects report: every dropped row, with the operator that dropped it and why.

``<export>.rejects.jsonl`` holds one line per dropped row: its columns as they stood when it was
dropped (so the statistics that condemned it are there), plus ``op`` and ``reason``. Bad input
(a missing, empty, corrupt or audio-only file) is dropped by ``probe`` with the decoder's error.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from nanosora.atomic import atomic_path


def write_rejects(path: Path, rejects: list[dict[str, Any]]) -> Path:
    """Write the report atomically (an empty file when nothing was dropped)."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as f:
        for row in rejects:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def count_by_op(rejects: list[dict[str, Any]]) -> dict[str, int]:
    """Dropped rows per operator, most first."""
    return dict(Counter(r["op"] for r in rejects).most_common())


def read_rejects(path: Path) -> list[dict[str, Any]]:
    """Load a rejects report."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
