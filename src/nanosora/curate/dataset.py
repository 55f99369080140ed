"""Curation input and output: manifests (parquet/CSV/JSONL) and Data-Juicer jsonl, both ways.

A Data-Juicer jsonl (``{"videos": [...], "text": "<__dj__video> ..."}``) is imported with the
lossless ``datajuicer`` adapter of ``nanosora ingest``; an export path ending in ``.jsonl`` for
such an input is written back in Data-Juicer's form (one sample per clip; a split clip carries
``start``/``end`` fields). Anything else is a manifest, written in the format of its suffix.
Relative paths in the output are relative to the output's folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from nanosora.data import ingest
from nanosora.data.adapters.generic import export_manifest
from nanosora.data.manifest import read_manifest, write_manifest


def is_datajuicer(path: Path) -> bool:
    """True for a jsonl whose first record has Data-Juicer's ``videos`` list."""
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return False
                return isinstance(record, dict) and isinstance(record.get("videos"), list)
    return False


def read_dataset(path: Path, scratch: Path) -> tuple[pd.DataFrame, str, bool]:
    """Read the recipe's dataset -> (table, folder its relative paths start from, was DJ jsonl)."""
    if not path.exists():
        raise FileNotFoundError(f"dataset_path not found: {path}")
    if not is_datajuicer(path):
        return read_manifest(path), os.path.dirname(os.path.abspath(path)), False

    imported = scratch / f".{path.stem}.dj-import.parquet"
    ingest.main(ingest.IngestConfig(dataset="datajuicer", annotations=(path,), output=imported,
                                    dedup=False, progress=False))  # fmt: skip
    return read_manifest(imported), str(scratch.resolve()), True


def write_dataset(
    rows: list[dict[str, Any]], root: str, out: Path, dj: bool, scratch: Path
) -> Path:
    """Write output rows to ``out`` (manifest by suffix, or Data-Juicer jsonl; module docstring)."""
    out_dir = os.path.dirname(os.path.abspath(out))
    moved = []
    for row in rows:
        path = os.path.normpath(os.path.join(root, row["path"]))
        moved.append({**row, "path": os.path.relpath(path, out_dir)})
    df = pd.DataFrame.from_records(moved) if moved else pd.DataFrame(columns=["path", "text"])
    if not (dj and out.suffix.lower() == ".jsonl"):
        return write_manifest(df, out)

    if "dj_videos" in df.columns:  # relative to the input jsonl; the clip's path is the truth now
        df = df.drop(columns=["dj_videos"])
    tmp = scratch / f".{out.stem}.export.parquet"
    df.to_parquet(tmp, index=False)
    try:
        return export_manifest(tmp, out, "datajuicer", source_dir=Path(out_dir))
    finally:
        tmp.unlink(missing_ok=True)
