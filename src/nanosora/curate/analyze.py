"""`nanosora analyze`: statistics of every score column, histograms, an HTML page, thresholds.

Input is a manifest with statistic columns: the output of ``nanosora curate`` or, with
``--recipe``, a statistics-only run of that recipe (every filter computes its columns, nothing is
dropped), which is how thresholds are chosen before filtering. For each numeric column other
than the row's identity (``path``, ``start``, ``curate_id`` ...): count, mean, std, min, the
1/5/25/50/75/95/99th percentiles, max, and a suggested keep-range ``mean +- 3 std`` clipped to
the observed range (Data-Juicer's recipes were tuned the same way: "3-sigma stats on MSR-VTT").
Outputs in ``out_dir``: ``stats.json``, ``stats.csv``, one ``hist_<column>.png`` each, and
``index.html``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nanosora.curate.runner import CurateConfig
from nanosora.curate.runner import main as curate
from nanosora.data.manifest import read_manifest

# Columns that describe a row's identity or position, not its quality.
IDENTITY = frozenset({"start", "end", "source_start", "source_end", "scene_index", "scene_count",
                      "x0", "y0", "size_px", "speed", "curate_id"})  # fmt: skip
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def score_columns(df: pd.DataFrame) -> list[str]:
    """Numeric columns worth a histogram (identity columns left out)."""
    cols = []
    for c in df.columns:
        if c in IDENTITY or df[c].dtype == bool:
            continue
        values = pd.to_numeric(df[c], errors="coerce")
        if values.notna().sum() > 0 and (values.notna() | df[c].isna()).all():
            cols.append(c)
    return cols


def column_stats(values: pd.Series) -> dict[str, Any]:
    """count, mean, std, min, percentiles, max and the 3-sigma suggestion of one column."""
    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=np.float64)
    if v.size == 0:
        return {"count": 0}
    mean, std = float(v.mean()), float(v.std(ddof=0))
    out: dict[str, Any] = {"count": int(v.size), "mean": mean, "std": std, "min": float(v.min())}
    out.update({f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES})
    out["max"] = float(v.max())
    out["suggested_min"] = max(out["min"], mean - 3 * std)
    out["suggested_max"] = min(out["max"], mean + 3 * std)
    return out


def histogram(values: pd.Series, column: str, stats: dict[str, Any], path: Path) -> Path:
    """PNG histogram with the mean and the 3-sigma suggestion marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    v = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=np.float64)
    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.hist(v, bins=min(50, max(5, int(np.sqrt(v.size)))), color="#4a7ab5")
    ax.axvline(stats["mean"], color="black", lw=1, label="mean")
    for key in ("suggested_min", "suggested_max"):
        ax.axvline(stats[key], color="#c0392b", lw=1, ls="--")
    ax.set_title(f"{column} (n={v.size})", fontsize=10)
    ax.set_xlabel(column)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_html(out_dir: Path, source: str, stats: dict[str, dict[str, Any]], n: int) -> Path:
    """``index.html``: a table of the statistics and every histogram."""
    keys = ["count", "mean", "std", "min", *[f"p{p}" for p in PERCENTILES], "max",
            "suggested_min", "suggested_max"]  # fmt: skip
    head = "".join(f"<th>{k}</th>" for k in ["column", *keys])
    body = []
    for col, s in stats.items():
        cells = "".join(f"<td>{s.get(k, ''):.6g}</td>" if isinstance(s.get(k), float)
                        else f"<td>{s.get(k, '')}</td>" for k in keys)  # fmt: skip
        body.append(f"<tr><td>{html.escape(col)}</td>{cells}</tr>")
    imgs = "".join(f'<figure><img src="hist_{html.escape(c)}.png"></figure>' for c in stats)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>nanosora analyze</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}figure{{display:inline-block}}
</style></head><body><h1>Statistics of {html.escape(source)}</h1><p>{n} rows. Suggested
thresholds: mean &plusmn; 3 std, clipped to the observed range.</p>
<table><tr>{head}</tr>{"".join(body)}</table>{imgs}</body></html>"""
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def analyze_manifest(manifest: Path, out_dir: Path) -> Path:
    """Write the analysis of ``manifest`` into ``out_dir``; returns ``index.html``."""
    df = read_manifest(manifest)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {c: column_stats(df[c]) for c in score_columns(df)}
    stats = {c: s for c, s in stats.items() if s["count"] > 0}
    for c, s in stats.items():
        histogram(df[c], c, s, out_dir / f"hist_{c}.png")
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    pd.DataFrame(stats).T.to_csv(out_dir / "stats.csv")
    return write_html(out_dir, str(manifest), stats, len(df))


def main(out_dir: Path, manifest: Path | None = None, recipe: Path | None = None,
         np_: int | None = None, progress: bool = True) -> Path:  # fmt: skip
    """Analyze ``manifest``, or first run ``recipe`` statistics-only into ``out_dir``."""
    if (manifest is None) == (recipe is None):
        raise ValueError("give a manifest or --recipe (one of them)")
    if recipe is not None:
        manifest = curate(CurateConfig(recipe=recipe, export=out_dir / "stats.parquet",
                                       keep_all=True, np=np_, progress=progress))  # fmt: skip
    assert manifest is not None
    return analyze_manifest(manifest, out_dir)
