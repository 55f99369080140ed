"""`state.json`: what each shot's files were made from, so `--resume` redoes only what is needed.

Per shot and part ("keyframe", "clip"): `inputs` (fingerprint of prompt, seed, model, sampler
settings), `digest` (fingerprint of the file's bytes as written), `seed`, `error` and, for clips,
the shapes probe's reading. A file is kept when it exists and its inputs are unchanged, or when its
bytes differ from what was written (a person replaced it: their file wins).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from nanosora.atomic import write_text_atomic


def fingerprint(*parts: Any) -> str:
    """A short stable fingerprint of JSON-able parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """Fingerprint of a file's bytes (keyframes and clips are small)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


class RunState:
    """`state.json`: per-shot records, timings; saved after every change so a kill loses little."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        self.data.setdefault("shots", {})
        self.data.setdefault("timings", {})

    def record(self, shot_id: str, part: str) -> dict[str, Any]:
        """The mutable record of one shot's `part` ('keyframe' or 'clip')."""
        return self.data["shots"].setdefault(shot_id, {}).setdefault(part, {})

    def save(self) -> None:
        """Write atomically."""
        write_text_atomic(self.path, json.dumps(self.data, indent=2, ensure_ascii=False))

    def keep(self, shot_id: str, part: str, path: Path, inputs: str) -> bool:
        """Whether an existing file can stay: same inputs, or replaced by hand since written."""
        if not path.is_file():
            return False
        rec = self.record(shot_id, part)
        if rec.get("digest") != file_digest(path):
            # Not the bytes this pipeline wrote: a person's file, never overwritten. It also
            # supersedes a failure recorded for this part (a keyframe that could not be drawn).
            if rec.get("error"):
                rec["error"] = ""
                rec["replaced_by_hand"] = True
                self.save()
            return True
        return not rec.get("error") and rec.get("inputs") == inputs

    def wrote(self, shot_id: str, part: str, path: Path, inputs: str, **info: Any) -> None:
        """Record a freshly written file and save."""
        rec = self.record(shot_id, part)
        rec.clear()
        rec.update(inputs=inputs, digest=file_digest(path), error="", **info)
        self.save()

    def failed(self, shot_id: str, part: str, error: str) -> None:
        """Record a failure (the file, if any, is left as it was) and save."""
        self.record(shot_id, part)["error"] = error
        self.save()
