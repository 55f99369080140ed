"""The per-pass journal that makes a curation run resumable after a crash or a kill.

Each finished input row appends one line ``{"id", "rows", "rejects"}`` with a single ``write``
on an append-mode file, flushed at once. A kill can only cut the last line short; loading drops
that fragment (and truncates it away, so the next append starts on a fresh line). A rerun
skips every row whose line is complete, so nothing is processed twice, and the output is built
from the journal sorted by input position, so it is the same whatever order rows finished in.

The journal folder carries a fingerprint of the recipe's operators and the input rows; a rerun
with a different recipe or dataset starts over instead of mixing results.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any


def fingerprint(ops: Any, rows: list[dict[str, Any]]) -> str:
    """SHA-1 over the operator specs and the input rows (as JSON)."""
    digest = hashlib.sha1(json.dumps(ops, sort_keys=True, default=str).encode())
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def prepare(work_dir: Path, key: str) -> bool:
    """Make ``work_dir`` hold journals for ``key``; returns True if earlier results are reused."""
    stamp = work_dir / "fingerprint"
    if stamp.is_file() and stamp.read_text().strip() == key:
        return True
    if work_dir.exists():
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True)
    stamp.write_text(key + "\n")
    return False


class Journal:
    """Append-only record of finished rows of one pass."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def load(self) -> dict[str, dict[str, Any]]:
        """Complete records by row id; a trailing fragment is truncated away."""
        done: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return done
        good = 0
        with self.path.open("rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # cut short by a kill
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    break
                done[str(record["id"])] = record
                good += len(line)
        if good != self.path.stat().st_size:
            os.truncate(self.path, good)
        return done

    def append(self, line: str) -> None:
        """Write one record line and flush it to the OS (a killed process loses nothing)."""
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
