"""Any table of clips: generic CSV/JSONL/parquet, Open-Sora's CSV and Data-Juicer's jsonl, in and out.

Reading (``Generic``, ``OpenSoraCsv``, ``DataJuicer``) is two passes over each file, both streaming:
the first profiles every column, the second converts cells with the types the profile chose, so
the parquet schema is fixed before a row is written and memory stays constant.

Lossless both ways, and why it holds:

- CSV cells carry no types. A column becomes int, float, bool or a list only if *every* non-empty
  cell is exactly what writing that value back produces (``str(int)``, ``repr(float)``,
  ``True``/``False``, ``repr(list)`` with str/int/float/bool leaves); otherwise it stays text. So an
  id "00123" stays "00123", and ``[('0:00:01.000', '0:00:02.000')]`` (tuples: Open-Sora's scene
  cuts) stays the exact string. Export writes those same forms (floats with ``repr``, lists with
  ``repr``, missing as empty, ``\\n`` line ends, minimal quoting: pandas' ``to_csv`` conventions,
  which Open-Sora uses), so CSV -> manifest -> CSV is byte-identical and manifest -> CSV -> manifest
  gives back equal values and types.
- JSON values carry their types; a key whose values are not one scalar type or one list shape is
  kept as JSON text and decoded again on export (parquet metadata names those columns).
- Data-Juicer samples are ``{"videos": [...], "text": "<__dj__video> caption <|__dj__eoc|>", ...}``
  with video paths relative to the jsonl's folder. ``path`` = the first video, re-based to the
  manifest's folder; ``text`` = the first text chunk without tokens (``captions`` = all chunks when
  there are several). Where the original ``videos`` or ``text`` is not exactly what export would
  write back, it is kept in ``dj_videos`` / ``dj_text`` and export uses it.

Relative paths in a generic or Open-Sora table are taken relative to the table's folder (as a
manifest's are) and re-based to the output manifest's folder; absolute paths stay as they are.

Column mapping (``Generic(columns={"path": "video", "text": "caption", "start": "t0"})``) renames
file columns to manifest names; mapped ``start``/``end`` accept seconds or ``H:MM:SS.mmm``, and the
mapped numeric manifest columns are converted to numbers. Unmapped columns keep their names.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from nanosora.atomic import atomic_path
from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError
from nanosora.data.adapters.formats import (
    CsvReader,
    check_field_count,
    check_utf8,
    iter_jsonl,
    parse_literal,
    parse_time,
)

VIDEO_TOKEN, EOC_TOKEN = "<__dj__video>", "<|__dj__eoc|>"
JSON_COLUMNS_KEY = b"nanosora.json_columns"  # parquet metadata: columns stored as JSON text
_INT = re.compile(r"-?(?:0|[1-9]\d*)")
_LEAF_TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
Shape = tuple[int, str | None]  # (list depth, leaf kind); leaf None: only empty lists seen


def build(dataset: str, columns: dict[str, str], manifest_dir: Path) -> Any:
    """The adapter for ``generic``, ``opensora`` or ``datajuicer``."""
    match dataset:
        case "generic":
            return Generic(columns, manifest_dir)
        case "opensora":
            return OpenSoraCsv(manifest_dir)
        case "datajuicer":
            return DataJuicer(manifest_dir)
    raise ValueError(f"not a generic dataset: {dataset!r}")


# ---------------------------------------------------------------------------------------------
# Column profiles: what type a column can losslessly be
# ---------------------------------------------------------------------------------------------


def _shape(value: Any) -> Shape | None:
    """List depth and leaf kind of a nested list of scalars; None for anything else."""
    if not isinstance(value, list):
        if value is None:
            return (0, None)
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(value))
        return (0, kind) if kind else None
    merged: Shape | None = (1, None)
    for item in value:
        inner = _shape(item)
        if inner is None:
            return None
        merged = _merge_shapes(merged, (inner[0] + 1, inner[1]))
        if merged is None:
            return None
    return merged


def _merge_shapes(a: Shape | None, b: Shape | None) -> Shape | None:
    """Combine two shapes; an all-empty or None side adopts the other's; else they must agree."""
    if a is None or b is None:
        return None
    if a[1] is None and a[0] <= b[0]:
        return b
    if b[1] is None and b[0] <= a[0]:
        return a
    return a if a == b else None


# Manifest columns whose type is fixed whatever the file holds (DESIGN.md section 2).
ROLES: dict[str, str] = {
    "path": "str", "text": "str", "source": "str", "source_id": "str", "codec": "str",
    "start": "time", "end": "time", "num_frames": "int", "height": "int", "width": "int",
    "fps": "float", "aspect_ratio": "float", "duration": "float",
}  # fmt: skip


class ColumnProfile:
    """What one column's values allow (seen in pass 1), and how pass 2 converts them.

    ``role`` fixes manifest columns: "str" (path, text, ...), "time" (start/end: seconds or
    timestamps), "int"/"float" (sizes, fps, ...); their inferred int/float type is kept when the
    cells allow it (so they round-trip), else they are converted. ``arrow`` passes a parquet
    column through with its own type.
    """

    def __init__(self, name: str, arrow: pa.DataType | None = None) -> None:
        self.name, self.arrow = name, arrow
        self.role = ROLES.get(name, "free")
        self.csv_kinds = {"int", "float", "bool", "list"}
        self.json_types: set[str] = set()
        self.shape: Shape | None = (1, None)
        self.seen_csv = self.seen_json = False
        self.json_text = False  # a parquet column that an earlier ingest stored as JSON text

    def observe_csv(self, cell: str) -> None:
        if cell == "":
            return
        self.seen_csv = True
        kinds = self.csv_kinds
        if "int" in kinds and not (_INT.fullmatch(cell) and str(int(cell)) == cell):
            kinds.discard("int")
        if "float" in kinds and not _is_repr_float(cell):
            kinds.discard("float")
        if "bool" in kinds and cell not in ("True", "False"):
            kinds.discard("bool")
        if "list" in kinds and self.role == "free":
            value = _literal_list(cell)
            shape = _shape(value) if value is not None else None
            self.shape = _merge_shapes(self.shape, shape) if shape else None
            if self.shape is None or repr(value) != cell:
                kinds.discard("list")

    def observe_json(self, value: Any) -> None:
        if value is None:
            return
        self.seen_json = True
        kind = type(value).__name__
        self.json_types.add(kind)
        if kind == "list":
            shape = _shape(value)
            self.shape = _merge_shapes(self.shape, shape) if shape else None

    def _inferred(self) -> str:
        if self.seen_csv and self.seen_json:
            return "str"
        if self.seen_csv:
            return next((k for k in ("int", "float", "bool", "list") if k in self.csv_kinds), "str")
        types = frozenset(self.json_types)
        simple = {
            frozenset(): "str", frozenset({"str"}): "str", frozenset({"int"}): "int",
            frozenset({"float"}): "float", frozenset({"int", "float"}): "float",
            frozenset({"bool"}): "bool",
        }  # fmt: skip
        if types in simple:
            return simple[types]
        return "list" if types == {"list"} and self.shape is not None else "json"

    @property
    def kind(self) -> str:
        """arrow, int, float, bool, list, str, json (JSON text) or time (seconds)."""
        if self.arrow is not None:
            return "arrow"
        inferred = self._inferred()
        if self.role == "free" or (self.role != "str" and inferred in ("int", "float")):
            return inferred
        return self.role

    def arrow_type(self) -> pa.DataType:
        kind = self.kind
        if kind == "arrow":
            assert self.arrow is not None
            return self.arrow
        if kind == "list":
            assert self.shape is not None
            depth, leaf = self.shape
            arrow = _LEAF_TYPES[leaf or "str"]
            for _ in range(depth):
                arrow = pa.list_(arrow)
            return arrow
        types = {"int": pa.int64(), "float": pa.float64(), "time": pa.float64(), "bool": pa.bool_()}
        return types.get(kind, pa.string())

    def convert(self, value: Any, from_csv: bool) -> Any:
        """A pass-2 value in this column's type (raises RowError if it does not fit)."""
        if value is None or (from_csv and value == "" and self.name != "text"):
            return None
        kind = self.kind
        try:
            match kind:
                case "arrow":
                    return value
                case "json":
                    return json.dumps(value, ensure_ascii=False)
                case "time":
                    return parse_time(value, self.name)
                case "int":
                    exact = not isinstance(value, str) or _INT.fullmatch(value)
                    return int(value) if exact else int(float(value))
                case "float":
                    return float(value)
                case "bool":
                    return value == "True" if from_csv else bool(value)
                case "list":
                    return parse_literal(value, self.name) if from_csv else value
        except (TypeError, ValueError):
            raise RowError(self.name, "bad_value", f"not a {kind}: {value!r:.80}") from None
        if not isinstance(value, str):
            raise RowError(self.name, "bad_value", f"not a string: {value!r:.80}")
        return check_utf8(value, self.name)


def _is_repr_float(cell: str) -> bool:
    try:
        return repr(float(cell)) == cell
    except ValueError:
        return False


def _literal_list(cell: str) -> list[Any] | None:
    if not (cell.startswith("[") and cell.endswith("]")):
        return None
    try:
        value = parse_literal(cell, "")
    except RowError:
        return None
    return value if isinstance(value, list) else None


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


class Generic:
    """Any CSV (delimiter sniffed), JSONL/JSON list or parquet table of clips.

    ``columns`` maps manifest names to file columns (``{"path": "video", "text": "caption"}``);
    a file needs a ``path`` column after mapping; a missing ``text`` becomes "".
    """

    source = "generic"

    def __init__(self, columns: dict[str, str] | None = None, manifest_dir: Path | None = None):
        self.rename = {file_col: name for name, file_col in (columns or {}).items()}
        self.profiles: dict[str, ColumnProfile] = {}
        self.manifest_dir = manifest_dir

    def _profile(self, file_column: str) -> ColumnProfile:
        name = self.rename.get(file_column, file_column)
        return self.profiles.setdefault(name, ColumnProfile(name))

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        """Pass 1: profile every column of every file."""
        for file in files:
            self._observe(file)
        if "path" not in self.profiles:
            raise ValueError(
                f"no 'path' column in {[str(f.path) for f in files]} (columns: "
                f"{list(self.profiles)}); map one with --column path=<column>"
            )
        self.profiles.setdefault("text", ColumnProfile("text"))
        return _schema(self.profiles.values())

    def _observe(self, file: AnnotationFile) -> None:
        kind = _table_kind(file)
        if kind == "csv":
            with CsvReader(file) as reader:
                profiles = [self._profile(h) for h in reader.header]
                for _, fields in reader:
                    for profile, cell in zip(profiles, fields, strict=False):
                        profile.observe_csv(cell)
        elif kind == "parquet":
            schema = pq.read_schema(file.path)
            json_text = set(json.loads((schema.metadata or {}).get(JSON_COLUMNS_KEY, b"[]")))
            for field in schema:
                profile = self._profile(field.name)
                profile.arrow, profile.json_text = field.type, field.name in json_text
        else:
            for _, record in iter_jsonl(file):
                if isinstance(record, dict):
                    for key, value in record.items():
                        self._profile(key).observe_json(value)

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        """Pass 2: convert every record with the profiled types."""
        kind = _table_kind(file)
        if kind == "csv":
            yield from self._csv_rows(file)
        elif kind == "parquet":
            names = [self.rename.get(n, n) for n in pq.read_schema(file.path).names]
            line = 0
            for batch in pq.ParquetFile(file.path).iter_batches(batch_size=65536):
                for values in batch.to_pylist():
                    line += 1
                    row = dict(zip(names, values.values(), strict=True))
                    yield self._checked(file, line, row, False)
        else:
            for line, record in iter_jsonl(file):
                if isinstance(record, RowError):
                    yield record.reject(file, line)
                    continue
                row = {self.rename.get(k, k): v for k, v in record.items()}
                yield self._checked(file, line, row, False)

    def _csv_rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        with CsvReader(file) as reader:
            names = [self.rename.get(h, h) for h in reader.header]
            for line, fields in reader:
                try:
                    check_field_count(fields, reader.header)
                except RowError as e:
                    yield e.reject(file, line, ",".join(fields))
                    continue
                yield self._checked(file, line, dict(zip(names, fields, strict=True)), True)

    def _checked(self, file: AnnotationFile, line: int, row: Row, from_csv: bool) -> Row | Reject:
        try:
            return self._row(file, row, line, from_csv)
        except RowError as e:
            return e.reject(file, line, json.dumps(row, ensure_ascii=False, default=str))

    def _row(self, file: AnnotationFile, values: Row, line: int, from_csv: bool) -> Row:
        row = {name: self.profiles[name].convert(v, from_csv) for name, v in values.items()}
        if not row.get("path"):
            raise RowError("path", "missing_field", "empty path")
        if self.manifest_dir is not None:  # relative to the table's folder, like a manifest's
            row["path"] = rebase(row["path"], file.path.resolve().parent, self.manifest_dir)
        if row.get("text") is None:
            row["text"] = ""
        row["_line"], row["_key"] = line, None
        return row


class OpenSoraCsv(Generic):
    """Open-Sora's metadata CSV (``path,text,num_frames,height,width,aspect_ratio,fps,...``).

    It is a generic CSV whose columns already have manifest names; list cells (``timestamp``
    scene cuts) stay exactly as written.
    """

    source = "opensora"

    def __init__(self, manifest_dir: Path | None = None) -> None:
        super().__init__({}, manifest_dir)

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        for file in files:
            if _table_kind(file) != "csv":
                raise ValueError(f"{file.path}: an Open-Sora table is a .csv file")
        return super().schema(files)


def _table_kind(file: AnnotationFile) -> Literal["csv", "parquet", "jsonl"]:
    suffix = file.path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    return "parquet" if suffix == ".parquet" else "jsonl"


def _schema(profiles: Any) -> pa.Schema:
    """The profiles as a schema; JSON-text columns are named in the metadata for export."""
    profiles = list(profiles)
    json_columns = [p.name for p in profiles if p.kind == "json" or p.json_text]
    fields = [pa.field(p.name, p.arrow_type()) for p in profiles]
    return pa.schema(fields, metadata={JSON_COLUMNS_KEY: json.dumps(json_columns).encode()})


# ---------------------------------------------------------------------------------------------
# Data-Juicer
# ---------------------------------------------------------------------------------------------


def dj_chunks(text: str) -> list[str]:
    """Caption chunks of a Data-Juicer text: split at ``<|__dj__eoc|>``, video tokens removed."""
    chunks = (part.replace(VIDEO_TOKEN, "").strip() for part in text.split(EOC_TOKEN))
    return [c for c in chunks if c]


def dj_text(caption: str) -> str:
    """The Data-Juicer text of one video with one caption."""
    return f"{VIDEO_TOKEN} {caption} {EOC_TOKEN}"


def rebase(path: str, from_dir: Path, to_dir: Path) -> str:
    """A path relative to ``from_dir`` as a path relative to ``to_dir`` (absolute paths stay)."""
    if os.path.isabs(path):
        return path
    return os.path.relpath(os.path.normpath(os.path.join(from_dir, path)), to_dir)


class DataJuicer(Generic):
    """Data-Juicer jsonl: ``videos`` + tokenised ``text`` + any other fields (module docstring)."""

    source = "datajuicer"
    SPECIAL = ("videos", "text")

    def __init__(self, manifest_dir: Path) -> None:
        super().__init__({}, manifest_dir)
        self.manifest_dir: Path = manifest_dir
        self.need = {"dj_videos": False, "dj_text": False, "captions": False}

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        self.profiles = {"path": ColumnProfile("path"), "text": ColumnProfile("text")}
        for file in files:
            for _, record in iter_jsonl(file):
                if isinstance(record, dict):
                    self._observe_sample(file, record)
        for name, arrow in [("dj_videos", pa.list_(pa.string())), ("dj_text", pa.string()),
                            ("captions", pa.list_(pa.string()))]:  # fmt: skip
            if self.need[name] and name not in self.profiles:
                self.profiles[name] = ColumnProfile(name, arrow)
        return _schema(self.profiles.values())

    def _observe_sample(self, file: AnnotationFile, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if key not in self.SPECIAL:
                self._profile(key).observe_json(value)
        try:
            _, videos, chunks, text = self._split(file, record)
        except RowError:
            return
        self.need["dj_videos"] |= videos is not None
        self.need["dj_text"] |= text is not None
        self.need["captions"] |= len(chunks) > 1

    def _split(
        self, file: AnnotationFile, record: dict[str, Any]
    ) -> tuple[str, list[str] | None, list[str], str | None]:
        """(manifest path, videos if not reproducible, chunks, text if not reproducible)."""
        videos, text = record.get("videos"), record.get("text")
        if (
            not isinstance(videos, list)
            or not videos
            or not all(isinstance(v, str) for v in videos)
        ):
            raise RowError("videos", "missing_field", "videos must be a non-empty list of paths")
        if not isinstance(text, str):
            raise RowError("text", "missing_field", "text must be a string")
        jsonl_dir = file.path.resolve().parent
        path = rebase(check_utf8(videos[0], "videos"), jsonl_dir, self.manifest_dir)
        same_videos = videos == [rebase(path, self.manifest_dir, jsonl_dir)]
        chunks = dj_chunks(check_utf8(text, "text"))
        same_text = len(chunks) == 1 and text == dj_text(chunks[0])
        return path, None if same_videos else videos, chunks, None if same_text else text

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        for line, record in iter_jsonl(file):
            if isinstance(record, RowError):
                yield record.reject(file, line)
                continue
            try:
                path, videos, chunks, text = self._split(file, record)
                row = {k: self.profiles[k].convert(v, False) for k, v in record.items()
                       if k not in self.SPECIAL}  # fmt: skip
            except RowError as e:
                yield e.reject(file, line, json.dumps(record, ensure_ascii=False))
                continue
            row.update(path=path, text=chunks[0] if chunks else "", _line=line, _key=None)
            row.update(dj_videos=videos, dj_text=text)
            if len(chunks) > 1:  # several caption chunks for the video(s)
                row["captions"] = chunks
            yield row


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------

Flavour = Literal["manifest", "opensora", "datajuicer"]


def csv_cell(value: Any) -> str:
    """A value as pandas' ``to_csv`` writes it: repr floats, ``repr`` lists, missing as ""."""
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float | list | dict):
        return repr(value)
    return str(value)


def dj_sample(row: dict[str, Any], source_dir: Path, out_dir: Path) -> dict[str, Any]:
    """One manifest row as a Data-Juicer sample (videos re-based to the jsonl's folder)."""
    videos = row.get("dj_videos") or [rebase(row["path"], source_dir, out_dir)]
    raw = row.get("dj_text")
    chunks = dj_chunks(raw) if raw is not None else []
    use_raw = raw is not None and chunks[:1] == [row["text"]]
    sample = {"videos": videos, "text": raw if use_raw else dj_text(row["text"])}
    for key, value in row.items():
        if key in ("path", "text", "dj_videos", "dj_text") or value is None:
            continue
        if key == "captions" and use_raw and value == chunks:
            continue  # the chunks of the kept text: writing them again would add a field
        sample[key] = value
    return sample


def export_manifest(parquet: Path, out: Path, flavour: Flavour, source_dir: Path) -> Path:
    """Stream a parquet manifest (paths relative to ``source_dir``) into ``out``.

    ``.csv`` (manifest or opensora): pandas/Open-Sora CSV conventions; ``.jsonl`` manifest: one
    JSON object per row; ``datajuicer``: Data-Juicer samples. Written atomically.
    """
    file = pq.ParquetFile(parquet)
    metadata = file.schema_arrow.metadata or {}
    json_columns = set(json.loads(metadata.get(JSON_COLUMNS_KEY, b"[]")))
    with atomic_path(out) as tmp, tmp.open("w", encoding="utf-8", newline="") as f:
        write = _row_writer(f, out, flavour, file.schema_arrow.names, source_dir)
        for batch in file.iter_batches(batch_size=16384):
            for row in batch.to_pylist():
                for key in json_columns & row.keys():
                    if row[key] is not None:
                        row[key] = json.loads(row[key])
                write(row)
    return out


def _row_writer(f: IO[str], out: Path, flavour: Flavour, names: list[str], source_dir: Path) -> Any:
    """The function that writes one row in ``flavour`` (and the CSV header, now)."""
    out_dir = out.resolve().parent
    if flavour == "datajuicer":
        return lambda row: f.write(
            json.dumps(dj_sample(row, source_dir, out_dir), ensure_ascii=False) + "\n"
        )

    def moved(row: dict[str, Any]) -> dict[str, Any]:
        if source_dir != out_dir and isinstance(row.get("path"), str):
            row["path"] = rebase(row["path"], source_dir, out_dir)
        return row

    if flavour == "opensora" or out.suffix == ".csv":
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(names)
        return lambda row: writer.writerow([csv_cell(moved(row)[n]) for n in names])
    return lambda row: f.write(json.dumps(moved(row), ensure_ascii=False) + "\n")
