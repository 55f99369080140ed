"""The manifest: one row per clip, the table every data stage reads and extends.

Schema (DESIGN.md section 2):

- required: ``path`` (video file, relative to the manifest's folder or absolute) and ``text``;
- optional, filled by stages: ``start``, ``end`` (seconds inside ``path``), ``source``,
  ``source_id``, ``num_frames``, ``fps``, ``height``, ``width``, ``aspect_ratio``, ``duration``,
  ``codec``, and score columns named after the operator that wrote them (``motion_score``, ...).

Formats are chosen by suffix: ``.parquet`` (for scale; keeps every dtype), ``.csv`` and ``.jsonl``.
Reading validates the schema and fails with the file, row index and field of the first problems;
writing is atomic (temp file + rename), so a killed stage never leaves a half-written manifest.
Stages add columns and never rewrite others: nothing here drops, renames or reorders columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nanosora.atomic import atomic_path

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "text")
NUMERIC_COLUMNS: tuple[str, ...] = (
    "start",
    "end",
    "num_frames",
    "fps",
    "height",
    "width",
    "aspect_ratio",
    "duration",
)
STRING_COLUMNS: tuple[str, ...] = ("source", "source_id", "codec")
OPTIONAL_COLUMNS: tuple[str, ...] = NUMERIC_COLUMNS + STRING_COLUMNS
SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".jsonl")

# Cells read as missing in CSV columns other than path/text. path/text keep "" as "" so that an
# empty caption (the unconditional prompt) survives a CSV round trip.
_CSV_NA = ("", "NA", "N/A", "n/a", "NaN", "nan", "-nan", "null", "NULL", "None", "<NA>", "#N/A")
_MAX_REPORTED = 5  # row indices named in one error message


class ManifestError(ValueError):
    """A manifest file or table that does not follow the schema."""


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ManifestError(
            f"{path}: unsupported manifest format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    return suffix


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


def _bad_rows(df: pd.DataFrame, column: str, ok: pd.Series, what: str, where: str) -> None:
    """Raise naming the first rows where ``ok`` is False."""
    bad = df.index[~ok.to_numpy(dtype=bool)]
    if len(bad) == 0:
        return
    shown = "; ".join(f"row {i}: {column}={df.at[i, column]!r}" for i in bad[:_MAX_REPORTED])
    more = f" (and {len(bad) - _MAX_REPORTED} more)" if len(bad) > _MAX_REPORTED else ""
    raise ManifestError(f"{where}: field {column!r} must be {what}; {shown}{more}")


def validate_manifest(df: pd.DataFrame, where: str = "manifest") -> None:
    """Check the schema of a manifest table; raise ManifestError naming ``where``, row and field.

    Checks: required columns present; ``path`` a non-empty string; ``text`` a string (may be "");
    the numeric optional columns numeric (missing values allowed).
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{where}: missing required column(s) {missing}; columns are {list(df.columns)}"
        )
    if df.columns.duplicated().any():
        raise ManifestError(f"{where}: duplicate column names {list(df.columns)}")
    path_ok = df["path"].map(lambda v: isinstance(v, str) and v.strip() != "")
    _bad_rows(df, "path", path_ok, "a non-empty string", where)
    _bad_rows(df, "text", df["text"].map(lambda v: isinstance(v, str)), "a string", where)
    for column in NUMERIC_COLUMNS:
        if column in df.columns and not pd.api.types.is_numeric_dtype(df[column]):
            # A column that is numeric except for missing cells (object dtype from JSONL) is fine.
            ok = df[column].map(lambda v: _is_missing(v) or isinstance(v, (int, float, np.number)))
            _bad_rows(df, column, ok, "a number", where)


def _is_missing(value: Any) -> bool:
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> pd.DataFrame:
    header = pd.read_csv(path, nrows=0).columns
    # Strings stay strings ("00123" keeps its zeros); path/text never become NaN (see _CSV_NA).
    strings = {c: str for c in header if c in REQUIRED_COLUMNS + STRING_COLUMNS}
    na = {c: list(_CSV_NA) for c in header if c not in REQUIRED_COLUMNS}
    return pd.read_csv(path, dtype=strings, keep_default_na=False, na_values=na)


def _read_jsonl(path: Path) -> pd.DataFrame:
    # The stdlib parser, not pd.read_json: no date guessing on column names, no dtype coercion of
    # string ids, full float precision, and an error that names the line.
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}: line {lineno} is not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}: line {lineno} is not a JSON object")
            rows.append(row)
    if not rows:
        return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
    return pd.DataFrame.from_records(rows)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read and validate a manifest (.parquet, .csv or .jsonl, chosen by suffix).

    Returns:
        DataFrame with one row per clip, a fresh RangeIndex (error messages use it), columns in
        file order.
    Raises:
        FileNotFoundError if ``path`` does not exist; ManifestError for an unsupported suffix,
        an unparsable file, a missing required column or an invalid row.
    """
    path = Path(path)
    fmt = _format(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    match fmt:
        case ".parquet":
            df = pd.read_parquet(path)
        case ".csv":
            try:
                df = _read_csv(path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as e:
                raise ManifestError(f"{path}: not a readable CSV manifest: {e}") from None
        case _:
            df = _read_jsonl(path)
    df = df.reset_index(drop=True)
    validate_manifest(df, str(path))
    return df


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """A cell as a JSON-serialisable value; missing cells become null (not the invalid NaN)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if _is_missing(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        return value.isoformat()
    return value


def _write_jsonl(df: pd.DataFrame, path: Path) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in df.to_dict(orient="records"):
            record = {str(k): _json_value(v) for k, v in row.items()}
            # ensure_ascii=False: Chinese captions stay readable in the file.
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Validate ``df`` and write it atomically in the format given by ``path``'s suffix.

    The index is not written (rows are identified by position). Parent folders are created.
    Returns the path written.
    """
    path = Path(path)
    fmt = _format(path)
    validate_manifest(df, str(path))
    with atomic_path(path) as tmp:
        match fmt:
            case ".parquet":
                df.to_parquet(tmp, index=False)
            case ".csv":
                df.to_csv(tmp, index=False)
            case _:
                _write_jsonl(df, tmp)
    return path


# ---------------------------------------------------------------------------------------------
# Files on disk
# ---------------------------------------------------------------------------------------------


def resolve_paths(df: pd.DataFrame, manifest_path: str | Path) -> pd.Series:
    """Absolute video paths: relative ``path`` cells are relative to the manifest's folder.

    Returns a Series of str aligned with ``df.index``. Paths are normalised (``..`` collapsed) but
    symlinks are not resolved, so the path a user wrote stays recognisable.
    """
    root = os.path.dirname(os.path.abspath(os.fspath(manifest_path)))
    return df["path"].map(lambda p: os.path.normpath(os.path.join(root, os.path.expanduser(p))))


def parse_mix_part(spec: str) -> tuple[Path, int | None]:
    """``"PATH"`` or ``"PATH:N"`` (the first N rows of PATH) -> (path, N or None)."""
    path, sep, rows = spec.rpartition(":")
    if not sep or not rows.isdigit():
        return Path(spec), None
    if int(rows) < 1:
        raise ManifestError(f"{spec}: the row count after ':' must be at least 1")
    return Path(path), int(rows)


def mix_manifests(
    parts: list[tuple[Path, int | None]], out: str | Path, seed: int = 0
) -> tuple[Path, list[int]]:
    """One manifest from several: the first N rows of each part (all where N is None), video
    paths made absolute, rows shuffled with ``seed``; columns are the union (a cell a part lacks
    is missing). Returns the path written and the rows taken from each part."""
    if not parts:
        raise ManifestError("nothing to mix: give at least one manifest")
    tables, counts = [], []
    for path, rows in parts:
        df = read_manifest(path)
        if rows is not None and rows > len(df):
            raise ManifestError(f"{path}: {rows} rows asked, it has {len(df)}")
        df = df.iloc[:rows].copy()
        df["path"] = resolve_paths(df, path)
        tables.append(df)
        counts.append(len(df))
    mixed = pd.concat(tables).sample(frac=1.0, random_state=seed, ignore_index=True)
    return write_manifest(mixed, out), counts
