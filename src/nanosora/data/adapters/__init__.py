"""Dataset adapters: read a dataset's annotation files exactly as its authors publish them.

One module per dataset (``msrvtt``, ``panda70m``, ``videoinstruct``, ``internvid``, ``youku``,
``shot2story``) plus ``generic`` (CSV/JSONL with a column mapping, Open-Sora's CSV, Data-Juicer's
jsonl). ``nanosora.data.ingest`` builds one adapter and streams its rows into a manifest.

Adapters read an ``AnnotationFile``: one input file, opened as UTF-8 that never fails to decode
(bad bytes become lone surrogates, so the *record* holding them is rejected, not the whole run) and
counting the bytes read for the progress display.

The contract every adapter follows:

- ``schema(files)``: the pyarrow schema of the rows it yields (it may peek at the files' headers):
  manifest columns first (``path``, ``text``, ``start``, ``end``, ``source``, ``source_id``), then
  the dataset's own fields under their own names. A fixed schema lets ingest write parquet row
  groups while it streams.
- ``rows(file)``: an iterator over one annotation file that yields a ``dict`` per manifest row or a
  ``Reject`` per malformed record. Each row dict also carries two private keys ingest consumes:
  ``_line`` (the 1-based line, or record number for JSON lists, the row came from) and ``_key``
  (the record's id for duplicate detection, or None). Rows of one record are yielded together and
  share ``_line`` and ``_key``, so a record that expands into several clips is one record.

Adapters never raise on a bad record: they yield a ``Reject`` naming the field and why, and go on.
A file that is not the format named yields one ``Reject`` for line 1 and nothing else.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import pyarrow as pa

Row = dict[str, Any]

# Columns every adapter's schema starts with, in this order (DESIGN.md section 2).
BASE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("path", pa.string()),
    pa.field("text", pa.string()),
    pa.field("start", pa.float64()),
    pa.field("end", pa.float64()),
    pa.field("source", pa.string()),
    pa.field("source_id", pa.string()),
)


@dataclass
class AnnotationFile:
    """One annotation file being read; ``bytes_read`` grows as it is consumed (for progress)."""

    path: Path
    bytes_read: int = 0

    @property
    def size(self) -> int:
        """File size in bytes."""
        return self.path.stat().st_size

    def open_text(self) -> IO[str]:
        """Open for text reading: UTF-8 (a BOM is skipped), bad bytes kept as surrogates."""
        self.bytes_read = 0  # progress counts the current pass (a header peek is one too)
        raw = _CountingReader(io.FileIO(self.path, "r"), self)
        buffered = io.BufferedReader(raw, buffer_size=1 << 20)
        # newline="" is what the csv module needs for quoted fields that contain newlines.
        return io.TextIOWrapper(
            buffered, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )

    def read_text(self) -> str:
        """The whole file as text (for whole-file JSON formats)."""
        with self.open_text() as f:
            return f.read()


class _CountingReader(io.RawIOBase):
    """A raw reader that adds every byte it reads to ``owner.bytes_read``."""

    def __init__(self, raw: io.FileIO, owner: AnnotationFile) -> None:
        super().__init__()
        self._raw, self._owner = raw, owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer) or 0
        self._owner.bytes_read += n
        return n

    def close(self) -> None:
        self._raw.close()
        super().close()


@dataclass(frozen=True)
class Reject:
    """A record that was skipped: where it is, which field is wrong, and why."""

    file: str
    line: int
    field: str
    kind: str  # short class for the summary: bad_literal, bad_timestamp, duplicate_id, ...
    reason: str
    raw: str = ""

    def message(self) -> str:
        """One log line that locates the problem: ``file:line: field: reason``."""
        return f"{self.file}:{self.line}: {self.field}: {self.reason}"


class RowError(ValueError):
    """Raised by field parsers; adapters turn it into a ``Reject`` for the current record."""

    def __init__(self, field: str, kind: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.kind, self.reason = field, kind, reason

    def reject(self, file: AnnotationFile, line: int, raw: str = "") -> Reject:
        """This error as a ``Reject`` of ``line`` in ``file`` (raw text cut to 500 chars)."""
        return Reject(str(file.path), line, self.field, self.kind, self.reason, raw[:500])


class Adapter(Protocol):
    """What ingest needs from a dataset adapter (see the module docstring)."""

    source: str

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        """Columns of the rows ``rows`` yields for these files, in order."""
        ...

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        """Manifest rows (with ``_line``/``_key``) and rejects of one annotation file."""
        ...


def make_schema(*extra: pa.Field, base: tuple[pa.Field, ...] = BASE_FIELDS) -> pa.Schema:
    """The base manifest fields followed by a dataset's own fields."""
    return pa.schema([*base, *extra])


def wrong_format(file: AnnotationFile, expected: str, found: str) -> Reject:
    """The single reject for a file that is not the format the adapter reads."""
    return Reject(str(file.path), 1, "(file)", "wrong_format", f"not {expected}: {found}", "")
