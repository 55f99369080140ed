"""A self-contained HTML report (GIFs and charts inlined as base64) plus ``report.json``."""

from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path

import numpy as np

from nanosora.video.io import write_gif


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def gif_data_uri(frames: np.ndarray, fps: float) -> str:
    """uint8 (T, H, W, C) -> data URI of a looping GIF."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.gif"
        write_gif(p, frames, fps=fps)
        return "data:image/gif;base64," + _b64(p)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + _b64(path)


def _table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_report(
    out_dir: Path,
    title: str,
    metrics: dict,
    tables: dict[str, list[dict]],
    videos: dict[str, list[tuple[str, np.ndarray]]],
    images: dict[str, Path],
    fps: float = 8.0,
) -> tuple[Path, Path]:
    """Write ``report.json`` (metrics + tables) and ``report.html`` into ``out_dir``.

    videos: section -> [(caption, uint8 (T, H, W, C))]; images: caption -> PNG path (charts).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(
        json.dumps({"title": title, "metrics": metrics, "tables": tables}, indent=2, default=str)
    )
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        "<h2>Metrics</h2>",
        _table([{"metric": k, "value": v} for k, v in _flatten(metrics).items()]),
    ]
    for name, rows in tables.items():
        parts += [f"<h2>{html.escape(name)}</h2>", _table(rows)]
    for section, items in videos.items():
        cells = "".join(
            f'<figure><img src="{gif_data_uri(v, fps)}" width="{2 * v.shape[2]}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            for cap, v in items
        )
        parts += [f"<h2>{html.escape(section)}</h2>", f'<div class="grid">{cells}</div>']
    for cap, path in images.items():
        if path and Path(path).is_file():
            parts += [f"<h2>{html.escape(cap)}</h2>", f'<img src="{png_data_uri(Path(path))}">']
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:13px}"
        ".grid{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;width:140px;font-size:11px}"
        "img{image-rendering:pixelated}"
    )
    doc = f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>{''.join(parts)}"
    html_path = out_dir / "report.html"
    html_path.write_text(doc)
    return json_path, html_path


def _flatten(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            flat[f"{prefix}{k}"] = v
    return flat
