"""`nanosora ingest DATASET`: a dataset's published annotation files -> a manifest.

Steps of ``main``:

1. build the dataset's adapter (``nanosora.data.adapters.<dataset>``) and its fixed schema;
2. stream every annotation file through it; rows are collected in batches of ``batch_rows``;
3. per batch: drop duplicated record ids, match rows to local videos (``--videos``), note what
   must be downloaded (``--download-list``), and write one parquet row group;
4. finish: rename the temp parquet onto the output (or export it as CSV / JSONL / Open-Sora CSV /
   Data-Juicer jsonl), write ``<out>.rejects.jsonl``, ``<out>.missing.csv``,
   ``<out>.summary.json``, and print the summary.

Memory is constant in the number of rows, with one exception: the duplicate-id filter keeps
16-32 bytes per distinct record id (Panda-70M's ~3.8M source videos: <= 128 MB; 70M ids: 1-2 GB);
``dedup=False`` removes it. Malformed records never stop the run (unless ``strict``): each is
written to the rejects file with file, line, field and reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from nanosora.atomic import atomic_path
from nanosora.config import ConfigError, doc
from nanosora.data.adapters import Adapter, AnnotationFile, Reject, Row, generic
from nanosora.data.adapters.generic import export_manifest
from nanosora.data.adapters.internvid import InternVid
from nanosora.data.adapters.msrvtt import MsrVtt
from nanosora.data.adapters.panda70m import Panda70M
from nanosora.data.adapters.shot2story import Shot2Story
from nanosora.data.adapters.videoinstruct import VideoInstruct
from nanosora.data.adapters.youku import YoukuMplug

Dataset = Literal[
    "msrvtt",
    "panda70m",
    "videoinstruct",
    "internvid",
    "youku",
    "shot2story",
    "generic",
    "opensora",
    "datajuicer",
]
DATASETS: tuple[str, ...] = Dataset.__args__  # type: ignore[attr-defined]
ExportFormat = Literal["manifest", "opensora", "datajuicer"]
VIDEO_SUFFIXES = frozenset(
    ".mp4 .mkv .webm .mov .avi .flv .m4v .mpg .mpeg .ts .wmv .3gp .ogv".split()
)


class IngestError(RuntimeError):
    """A run that cannot proceed (bad arguments, or a reject under ``strict``)."""


@dataclass(frozen=True)
class IngestConfig:
    """One ingest run: which dataset, which files, where the manifest goes."""

    dataset: Dataset = doc("panda70m", "dataset whose published annotation format is read")
    annotations: tuple[Path, ...] = doc((), "annotation files, read in order into one manifest")
    output: Path = doc(Path("manifest.parquet"), "manifest (.parquet, .csv or .jsonl)")
    videos: Path | None = doc(None, "folder of local videos to match rows to (by path/name/id)")
    download_list: Path | None = doc(None, "write url/id list for yt-dlp/video2dataset here")
    rows: str | None = doc(None, "row granularity: clip|caption (msrvtt, ...), shot|video")
    to: ExportFormat = doc("manifest", "output flavour: manifest, opensora CSV, datajuicer jsonl")
    columns: tuple[tuple[str, str], ...] = doc((), "generic: (manifest column, file column) pairs")
    meta: Path | None = doc(None, "side file: Shot2Story *_meta.csv, Youku label map, ...")
    strict: bool = doc(False, "stop at the first malformed record instead of rejecting it")
    keep_missing: bool = doc(False, "keep rows whose video is not found under `videos`")
    dedup: bool = doc(True, "reject records whose id was already seen (16-32 B per id)")
    batch_rows: int = doc(65536, "rows per parquet row group")
    progress: bool = doc(True, "show a progress bar")

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ConfigError(f"unknown dataset {self.dataset!r}; choose from {DATASETS}")
        if not self.annotations:
            raise ConfigError("ingest needs at least one annotation file")
        if self.output.suffix not in (".parquet", ".csv", ".jsonl"):
            raise ConfigError(f"output must end in .parquet, .csv or .jsonl: {self.output}")
        if self.batch_rows < 1:
            raise ConfigError("batch_rows must be >= 1")


def build_adapter(cfg: IngestConfig) -> Adapter:
    """The one place a dataset name becomes an adapter."""
    match cfg.dataset:
        case "msrvtt":
            return MsrVtt(rows=cfg.rows or "clip")
        case "panda70m":
            return Panda70M()
        case "videoinstruct":
            return VideoInstruct(rows=cfg.rows or "clip")
        case "internvid":
            return InternVid()
        case "youku":
            return YoukuMplug(rows=cfg.rows or "clip", label_map=cfg.meta)
        case "shot2story":
            return Shot2Story(rows=cfg.rows or "shot", meta=cfg.meta)
        case "generic" | "opensora" | "datajuicer":
            return generic.build(cfg.dataset, dict(cfg.columns), cfg.output.resolve().parent)
    raise ConfigError(f"unknown dataset {cfg.dataset!r}")


# ---------------------------------------------------------------------------------------------
# Duplicate record ids
# ---------------------------------------------------------------------------------------------


class SeenKeys:
    """Set of 64-bit hashes of record ids: numpy open addressing, 8 bytes a slot, load 1/4-1/2.

    ``add`` takes a whole batch at once (vectorised linear probing), so checking 70M ids costs
    seconds, not the minutes a Python set of strings would, and a fraction of its memory.
    Two different ids collide with probability ~n^2 / 2^65 (1e-4 for 70M ids).
    """

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._slots = np.zeros(capacity, dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, hashes: np.ndarray) -> np.ndarray:
        """Insert ``hashes`` (uint64, nonzero); True where the hash was already present."""
        self._reserve(len(hashes))
        mask = np.uint64(len(self._slots) - 1)
        pos = hashes & mask
        seen = np.zeros(len(hashes), dtype=bool)
        pending = np.arange(len(hashes))
        while pending.size:
            slot, key = pos[pending], hashes[pending]
            current = self._slots[slot]
            hit, empty = current == key, current == 0
            seen[pending[hit]] = True
            # Several pending keys may want one empty slot: the earliest row claims it; the
            # others look at the same slot again next round (a duplicate then hits it).
            empty_at = np.flatnonzero(empty)
            _, first = np.unique(slot[empty_at], return_index=True)
            winners = empty_at[first]
            self._slots[slot[winners]] = key[winners]
            self._count += len(winners)
            done = hit.copy()
            done[winners] = True
            move = ~hit & ~empty
            pos[pending[move]] = (slot[move] + np.uint64(1)) & mask
            pending = pending[~done]
        return seen

    def _reserve(self, extra: int) -> None:
        if 2 * (self._count + extra) <= len(self._slots):
            return
        old = self._slots[self._slots != 0]
        capacity = len(self._slots)
        while 2 * (self._count + extra) > capacity:
            capacity *= 2
        self._slots, self._count = np.zeros(capacity, dtype=np.uint64), 0
        self.add(old)


def hash_keys(keys: list[str]) -> np.ndarray:
    """Record ids -> nonzero uint64 hashes (Python's str hash: fast, stable within a run)."""
    h = np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys)).view(np.uint64)
    h[h == 0] = 1  # 0 marks an empty slot in SeenKeys
    return h


# ---------------------------------------------------------------------------------------------
# Matching rows to local videos
# ---------------------------------------------------------------------------------------------

# yt-dlp's default output name is "<title> [<id>].<ext>"; ActivityNet (VideoInstruct) names
# files "v_<id>.<ext>". Both embed an 11-character YouTube id.
_YT_BRACKETS = re.compile(r"\[([A-Za-z0-9_-]{11})\]$")
_YT_ID = re.compile(r"[A-Za-z0-9_-]{11}")


def youtube_ids_in_name(stem: str) -> list[str]:
    """YouTube ids a local file name carries: ``ID``, ``v_ID`` or ``... [ID]``."""
    ids = []
    if _YT_ID.fullmatch(stem):
        ids.append(stem)
    if stem.startswith("v_") and _YT_ID.fullmatch(stem[2:]):
        ids.append(stem[2:])
    if m := _YT_BRACKETS.search(stem):
        ids.append(m.group(1))
    return ids


class VideoIndex:
    """The video files under a folder, looked up by relative path, file name, stem and YouTube id.

    Built once (one directory walk); ``find`` is a few dict lookups per row. When two files claim
    one name or id (``a.mp4`` and ``a.webm``), the first in sorted order wins and the clash is
    counted in ``ambiguous``.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_path: dict[str, str] = {}
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        self.by_youtube: dict[str, str] = {}
        self.empty: set[str] = set()
        self.ambiguous = 0
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                if os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES:
                    self._add(os.path.join(dirpath, name))

    def _add(self, path: str) -> None:
        rel = os.path.relpath(path, self.root).replace(os.sep, "/")
        name = os.path.basename(path)
        stem = os.path.splitext(name)[0]
        self.by_path[rel] = path
        if os.path.getsize(path) == 0:
            self.empty.add(path)
        for table, key in [(self.by_name, name), (self.by_stem, stem)]:
            if key in table:
                self.ambiguous += 1
            table.setdefault(key, path)
        for yid in youtube_ids_in_name(stem):
            self.by_youtube.setdefault(yid, path)

    def __len__(self) -> int:
        return len(self.by_path)

    def find(self, hint: str, ids: list[str]) -> tuple[str | None, str]:
        """``(file, how)`` with how in path/name/id/youtube_id, or ``(None, reason)``."""
        rel = hint.replace("\\", "/").lstrip("./") if hint else ""
        found: tuple[str | None, str] = (None, "")
        if rel in self.by_path:
            found = (self.by_path[rel], "path")
        elif (name := os.path.basename(rel)) in self.by_name:
            found = (self.by_name[name], "name")
        else:
            for i in ids:
                if i in self.by_stem:
                    found = (self.by_stem[i], "id")
                    break
                if i in self.by_youtube:
                    found = (self.by_youtube[i], "youtube_id")
                    break
        if found[0] is None:
            return (
                None,
                f"no file named {os.path.basename(rel)!r} or with id {ids} under {self.root}",
            )
        if found[0] in self.empty:
            return None, f"empty file {found[0]}"
        return found


# ---------------------------------------------------------------------------------------------
# Side outputs: rejects, missing videos, download list
# ---------------------------------------------------------------------------------------------


def side_path(output: Path, what: str, suffix: str) -> Path:
    """``manifest.parquet`` -> ``manifest.<what><suffix>`` next to it."""
    return output.with_name(f"{output.stem}.{what}{suffix}")


def _printable(value: Any) -> Any:
    """Bytes that were not UTF-8 (kept as surrogates) shown as ``\\xe9`` in a UTF-8 file."""
    if isinstance(value, str) and not value.isascii():
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return value


class RejectLog:
    """Rejects streamed to a JSONL file (one object per record) and counted by kind."""

    def __init__(self, path: Path, strict: bool) -> None:
        self.path, self.strict = path, strict
        self.counts: Counter[str] = Counter()
        self._f: IO[str] | None = None

    def add(self, reject: Reject) -> None:
        if self.strict:
            raise IngestError(f"strict: {reject.message()}")
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self.path.open("w", encoding="utf-8")
        self.counts[reject.kind] += 1
        record = {k: _printable(v) for k, v in asdict(reject).items()}
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        elif self.path.exists():
            self.path.unlink()  # a stale file from an earlier run would mislead


class TableLog:
    """A side table written row by row: ``.csv``, ``.jsonl``, or ``.txt`` (first column only)."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns, self.count = path, columns, 0
        self._f: IO[str] | None = None

    def add(self, values: list[Any]) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self.path.open("w", encoding="utf-8", newline="")
            if self.path.suffix not in (".jsonl", ".txt"):
                self._f.write(self._format(self.columns))
        self.count += 1
        self._f.write(self._format(values))

    def _format(self, values: list[Any]) -> str:
        match self.path.suffix:
            case ".jsonl":
                return (
                    json.dumps(dict(zip(self.columns, values, strict=True)), ensure_ascii=False)
                    + "\n"
                )
            case ".txt":
                return f"{values[0]}\n"
            case _:
                buf = io.StringIO()
                csv.writer(buf).writerow(["" if v is None else v for v in values])
                return buf.getvalue()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


class IngestRun:
    """What the steps of one ingest share: the writers, the duplicate filter, the counts."""

    def __init__(self, cfg: IngestConfig, schema: pa.Schema, tmp: Path) -> None:
        self.cfg, self.schema = cfg, schema
        self.out_dir = cfg.output.resolve().parent
        self.writer: pq.ParquetWriter | None = pq.ParquetWriter(tmp, schema)
        self.rejects = RejectLog(side_path(cfg.output, "rejects", ".jsonl"), cfg.strict)
        self.missing = TableLog(
            side_path(cfg.output, "missing", ".csv"), ["file", "line", "id", "path", "reason"]
        )
        self.downloads = (
            TableLog(cfg.download_list, ["url", "id", "start", "end"])
            if cfg.download_list
            else None
        )
        self.index = VideoIndex(cfg.videos) if cfg.videos else None
        self.seen = SeenKeys() if cfg.dedup else None
        self.counts: Counter[str] = Counter()
        self._last_line: int | None = None  # record of the previous row (rows of a record are
        self._last_dup = False  # contiguous, and a record may straddle two batches)
        self._cache: tuple[Any, tuple[str | None, str]] = (None, (None, ""))
        self._last_missing: int | None = None
        self._last_download: Any = None

    def read(self, adapter: Adapter, file: AnnotationFile, tick: Callable[[], None]) -> None:
        """Stream one annotation file through the adapter in batches."""
        self._last_line, self._last_dup, self._last_missing = None, False, None
        batch: list[Row] = []
        for item in adapter.rows(file):
            if isinstance(item, Reject):
                self.rejects.add(item)
                continue
            batch.append(item)
            if len(batch) >= self.cfg.batch_rows:
                self.add_batch(file, batch)
                batch = []
                tick()
        if batch:
            self.add_batch(file, batch)
        tick()

    def add_batch(self, file: AnnotationFile, rows: list[Row]) -> None:
        """Dedup, match, note downloads, write one row group."""
        self.counts["rows_read"] += len(rows)
        rows = self._drop_duplicates(file, rows)
        rows = self._match_videos(file, rows)
        if rows:
            self._write(file, rows)

    def _drop_duplicates(self, file: AnnotationFile, rows: list[Row]) -> list[Row]:
        firsts, prev = [], self._last_line
        for i, row in enumerate(rows):
            if row["_line"] != prev:
                firsts.append(i)
                prev = row["_line"]
        self.counts["records"] += len(firsts)
        row_first = np.zeros(len(rows), dtype=bool)
        row_first[firsts] = True
        dup = np.zeros(len(rows), dtype=bool)
        keyed = [i for i in firsts if rows[i]["_key"] is not None]
        if self.seen is not None and keyed:
            dup[keyed] = self.seen.add(hash_keys([str(rows[i]["_key"]) for i in keyed]))
        kept, is_dup = [], self._last_dup
        for i, row in enumerate(rows):
            if row_first[i]:
                is_dup = bool(dup[i])
                if is_dup:
                    reason = f"duplicate id {row['_key']!r} (an earlier record has it)"
                    self.rejects.add(
                        Reject(str(file.path), row["_line"], "(id)", "duplicate_id", reason)
                    )
            if is_dup:
                self.counts["duplicate_rows"] += 1
            else:
                kept.append(row)
        self._last_line, self._last_dup = prev, is_dup
        return kept

    def _match_videos(self, file: AnnotationFile, rows: list[Row]) -> list[Row]:
        kept = []
        for row in rows:
            found, how = self._find(row)
            new_record = row["_line"] != self._last_missing
            self._last_missing = row["_line"]
            if self.index is not None:
                row["video_match"] = how if found else None
                self.counts[f"matched_{how}" if found else "missing_rows"] += 1
                if found is None and new_record:
                    ident = row.get("youtube_id") or row.get("source_id")
                    self.missing.add([str(file.path), row["_line"], ident, row["path"], how])
            if found is not None:
                row["path"] = found
            elif self.downloads is not None and new_record:
                self._note_download(row)
            if found is not None or self.index is None or self.cfg.keep_missing:
                kept.append(row)
        return kept

    def _find(self, row: Row) -> tuple[str | None, str]:
        """The row's local video relative to the manifest's folder, and how it matched.

        Consecutive rows usually share a video (clips of one source), so the last answer is
        cached.
        """
        if self.index is None:
            return None, ""
        hint = str(row.get("path") or "")
        ids = [str(v) for v in (row.get("source_id"), row.get("youtube_id")) if v]
        if (hint, ids) == self._cache[0]:
            return self._cache[1]
        found, how = self.index.find(hint, ids)
        answer = (os.path.relpath(found, self.out_dir) if found else None, how)
        self._cache = ((hint, ids), answer)
        return answer

    def _note_download(self, row: Row) -> None:
        """One download-list entry per source video (rows of a video are contiguous)."""
        assert self.downloads is not None
        url = row.get("url")
        ident = row.get("youtube_id") or row.get("source_id")
        entry = (url, ident, row.get("url_start"), row.get("url_end"))
        if entry == self._last_download:
            return
        self._last_download = entry
        if not url:
            self.counts["download_without_url"] += 1
            if self.downloads.path.suffix == ".txt":
                return  # a URL list cannot hold an entry without a URL
        self.downloads.add(list(entry))

    def _write(self, file: AnnotationFile, rows: list[Row]) -> None:
        """One parquet row group; a row whose values do not fit the schema is rejected alone."""
        names = self.schema.names
        try:
            table = pa.Table.from_pydict(
                {n: [r.get(n) for r in rows] for n in names}, schema=self.schema
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            good = []
            for r in rows:
                try:
                    pa.Table.from_pylist([{n: r.get(n) for n in names}], schema=self.schema)
                    good.append(r)
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as e:
                    self.rejects.add(
                        Reject(str(file.path), r["_line"], "(row)", "bad_value", str(e)[:300])
                    )
            table = pa.Table.from_pylist(
                [{n: r.get(n) for n in names} for r in good], schema=self.schema
            )
        assert self.writer is not None, "write after close"
        self.writer.write_table(table)
        self.counts["rows_written"] += table.num_rows

    def close(self) -> None:
        """Close every writer (idempotent)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.rejects.close()
        self.missing.close()
        if self.downloads is not None:
            self.downloads.close()


def summarize(cfg: IngestConfig, run: IngestRun, seconds: float) -> dict[str, Any]:
    """What the run did, as written to ``<out>.summary.json``."""
    c = run.counts
    summary: dict[str, Any] = {
        "dataset": cfg.dataset,
        "annotations": [str(p) for p in cfg.annotations],
        "output": str(cfg.output),
        "seconds": round(seconds, 3),
        "records": c["records"],
        "rows_read": c["rows_read"],
        "rows_written": c["rows_written"],
        "rejected": dict(run.rejects.counts),
        "rejects_file": str(run.rejects.path) if run.rejects.counts else None,
        "duplicate_rows": c["duplicate_rows"],
    }
    if run.index is not None:
        hows = ("path", "name", "id", "youtube_id")
        summary["videos"] = {
            "folder": str(run.index.root),
            "files": len(run.index),
            "ambiguous_names": run.index.ambiguous,
            "matched_rows": {h: c[f"matched_{h}"] for h in hows if c[f"matched_{h}"]},
            "missing_rows": c["missing_rows"],
            "missing_videos": run.missing.count,
            "missing_file": str(run.missing.path) if run.missing.count else None,
            "missing_rows_kept": cfg.keep_missing,
        }
    if run.downloads is not None:
        summary["download_list"] = {
            "path": str(run.downloads.path),
            "entries": run.downloads.count,
            "without_url": c["download_without_url"],
        }
    return summary


def print_summary(summary: dict[str, Any]) -> None:
    """The summary as a rich table on stderr."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ingest {summary['dataset']} -> {summary['output']}", show_header=False)
    for key, value in summary.items():
        if key in ("dataset", "output", "annotations"):
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        table.add_row(key, str(value))
    Console(stderr=True).print(table)


@contextmanager
def progress_bar(enabled: bool, files: list[AnnotationFile]) -> Iterator[Callable[[], None]]:
    """A rich progress bar over the bytes of all files; yields the function that refreshes it."""
    if not enabled:
        yield lambda: None
        return
    from rich.progress import DownloadColumn, Progress, TimeRemainingColumn

    columns = (*Progress.get_default_columns()[:-1], DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task("ingest", total=sum(f.size for f in files) or 1)
        yield lambda: bar.update(task, completed=sum(f.bytes_read for f in files))


def main(cfg: IngestConfig) -> Path:
    """Run one ingest (module docstring); returns the manifest path."""
    start = time.perf_counter()
    files = [AnnotationFile(Path(p)) for p in cfg.annotations]
    for f in files:
        if not f.path.is_file():
            raise IngestError(f"annotation file not found: {f.path}")
    if cfg.videos is not None and not cfg.videos.is_dir():
        raise IngestError(f"--videos is not a folder: {cfg.videos}")
    adapter = build_adapter(cfg)
    schema = adapter.schema(files)
    if cfg.videos is not None:
        schema = schema.append(pa.field("video_match", pa.string()))
    # Rows stream into a parquet file; another flavour is exported from it at the end.
    direct = cfg.to == "manifest" and cfg.output.suffix == ".parquet"
    with atomic_path(cfg.output) as tmp:
        streamed = tmp if direct else tmp.with_suffix(".parquet")
        run = IngestRun(cfg, schema, streamed)
        try:
            with progress_bar(cfg.progress, files) as tick:
                for f in files:
                    run.read(adapter, f, tick)
            run.close()
            if not direct:
                export_manifest(streamed, tmp, cfg.to, source_dir=cfg.output.resolve().parent)
        finally:
            run.close()
            if not direct:
                streamed.unlink(missing_ok=True)
    summary = summarize(cfg, run, time.perf_counter() - start)
    side_path(cfg.output, "summary", ".json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    if cfg.progress:
        print_summary(summary)
    return cfg.output
