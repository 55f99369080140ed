"""Comparison mode: several ``report.json`` files side by side in one self-contained HTML page.

Each run is named after the folder holding its report (made unique with a counter when two
folders share a name). The page has one table (a row per metric, a column per run; a metric a run
lacks is shown as "-") and one bar chart per numeric metric shared by at least two runs, the
arrow in each chart title saying which way is better where the metric's name tells.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from nanosora.evaluate.report import _flatten, _table, png_data_uri

# Substrings of metric names whose smaller values are better; everything else: larger is better.
LOWER_IS_BETTER = ("fvd", "fsd", "flicker", "motion_smoothness", "perceptual", "loss")
MAX_CHARTS = 24


def _run_names(paths: list[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = p.parent.name or p.stem
        name, k = base, 2
        while name in names:
            name, k = f"{base} ({k})", k + 1
        names.append(name)
    return names


def load_reports(paths: list[str | Path]) -> dict[str, dict]:
    """Run name -> flattened numeric/str metrics of each report (in the order given)."""
    ps = [Path(p) for p in paths]
    if len(ps) < 2:
        raise ValueError(f"--compare needs at least two report.json files, got {len(ps)}")
    runs = {}
    for name, p in zip(_run_names(ps), ps):
        if p.is_dir():
            p = p / "report.json"
        if not p.is_file():
            raise FileNotFoundError(f"report {p} not found")
        try:
            report = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{p} is not a report.json: {e}") from e
        if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
            raise ValueError(f"{p} has no 'metrics' object: not a nanosora report.json")
        runs[name] = _flatten(report["metrics"])
    return runs


def _lower_is_better(metric: str) -> bool:
    return any(s in metric for s in LOWER_IS_BETTER)


def _charts(runs: dict[str, dict], metrics: list[str], out_dir: Path) -> list[tuple[str, Path]]:
    """One small bar chart per metric -> PNG files in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(runs)
    charts = []
    for k, metric in enumerate(metrics[:MAX_CHARTS]):
        values = [runs[n].get(metric) for n in names]
        fig, ax = plt.subplots(figsize=(1.2 + 0.9 * len(names), 2.6))
        ax.bar(
            range(len(names)),
            [v if isinstance(v, (int, float)) else 0 for v in values],
            color="#4a7",
        )
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        arrow = "lower is better" if _lower_is_better(metric) else "higher is better"
        ax.set_title(f"{metric}\n({arrow})", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"compare_{k:02d}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        charts.append((metric, path))
    return charts


def compare_reports(paths: list[str | Path], out: str | Path) -> tuple[Path, Path]:
    """Write ``compare.json`` and ``compare.html`` (table + charts) into ``out``; returns both."""
    runs = load_reports(paths)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: list[str] = []
    for m in runs.values():
        metrics += [k for k in m if k not in metrics]
    rows = [{"metric": k, **{n: runs[n].get(k, "-") for n in runs}} for k in metrics]

    def numeric(v: object) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    shared = [k for k in metrics if sum(numeric(runs[n].get(k)) for n in runs) >= 2]
    charts = _charts(runs, shared, out_dir)
    json_path = out_dir / "compare.json"
    json_path.write_text(json.dumps({"runs": runs, "sources": [str(p) for p in paths]}, indent=2))
    figures = "".join(f'<figure><img src="{png_data_uri(p)}"></figure>' for _, p in charts)
    style = (
        "body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}"
        ".grid{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0}"
    )
    sources = "".join(
        f"<li>{html.escape(n)}: {html.escape(str(p))}</li>" for n, p in zip(runs, paths)
    )
    doc = (
        f"<!doctype html><meta charset=utf-8><title>nanosora eval: comparison</title>"
        f"<style>{style}</style><h1>nanosora eval: {len(runs)} runs side by side</h1>"
        f"<ul>{sources}</ul><h2>Metrics</h2>{_table(rows)}"
        f'<h2>Charts</h2><div class="grid">{figures}</div>'
    )
    html_path = out_dir / "compare.html"
    html_path.write_text(doc)
    for _, p in charts:
        p.unlink()  # inlined into the page
    return json_path, html_path
