"""The studio's output folder: everything the studio writes, and all it reads besides its models.

    gallery.jsonl                 one JSON line per finished result: kind, settings, files, grades
    results/<id>/                 a result's files (mp4, GIF, grid, strip, contact sheet)
    stories/<id>/                 a story run (film.mp4, film.story/, storyboard)
    uploads/<digest>.npy          an upload as the model takes it (frames at its size), by content
    .gradio/                      the web server's own upload and file cache

Ids and file names are made here (a timestamp and random hex, or a content digest); a name a
user gave never becomes part of a path.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from pathlib import Path

import numpy as np

ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$")
DIGEST = re.compile(r"^[0-9a-f]{16}$")


class StudioError(ValueError):
    """A request the studio refuses, with the reason a person can act on."""


class Store:
    """The output folder (see the module docstring); thread-safe."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.gallery = self.root / "gallery.jsonl"
        self._lock = threading.Lock()

    def new_id(self) -> str:
        """A fresh result id: the time and 24 random bits, e.g. 20250101-120000-a1b2c3."""
        return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"

    def folder(self, kind: str, rid: str) -> Path:
        """``results/<id>`` or ``stories/<id>``, created; the id must be one this store makes."""
        if kind not in ("results", "stories") or not ID.match(rid):
            raise StudioError(f"no such result: {rid!r}")
        path = self.root / kind / rid
        path.mkdir(parents=True, exist_ok=True)
        return path

    def inside(self, relative: str) -> Path:
        """The file ``relative`` names inside the folder; refuses anything that leaves it."""
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root) or path == self.root:
            raise StudioError(f"{relative!r} is outside the studio's folder")
        return path

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def save_upload(self, digest: str, frames: np.ndarray) -> str:
        """Keep an upload's frames (uint8 (K, H, W, 3)) under its content digest; its reference."""
        if not DIGEST.match(digest):
            raise StudioError(f"bad upload digest {digest!r}")
        path = self.root / "uploads" / f"{digest}.npy"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{digest}.{secrets.token_hex(4)}.npy")
            np.save(tmp, frames, allow_pickle=False)
            tmp.replace(path)
        return digest

    def load_upload(self, digest: str) -> np.ndarray:
        """The frames kept by `save_upload`."""
        if not isinstance(digest, str) or not DIGEST.match(digest):
            raise StudioError(f"bad upload reference {digest!r}")
        path = self.root / "uploads" / f"{digest}.npy"
        if not path.is_file():
            raise StudioError(f"the upload {digest} is no longer in {self.root / 'uploads'}")
        return np.load(path, allow_pickle=False)

    def add(self, entry: dict) -> None:
        """Append one result to the gallery."""
        line = json.dumps(entry, ensure_ascii=False) + "\n"
        with self._lock, self.gallery.open("a", encoding="utf-8") as f:
            f.write(line)

    def entries(self) -> list[dict]:
        """The gallery, newest first; lines that are not results of this store are skipped."""
        if not self.gallery.is_file():
            return []
        out = []
        with self._lock:
            lines = self.gallery.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not ID.match(str(entry.get("id", ""))):
                    raise ValueError("no result id")
                for rel in entry.get("files", {}).values():
                    self.inside(rel)
            except (ValueError, TypeError, AttributeError) as e:
                print(f"warning: {self.gallery} line {n} skipped: {e}")
                continue
            out.append(entry)
        return out[::-1]

    def entry(self, rid: str) -> dict:
        """One gallery entry by id."""
        for e in self.entries():
            if e["id"] == rid:
                return e
        raise StudioError(f"no result {rid!r} in the gallery")
