"""The storyboard: an HTML page and a PNG contact sheet of the shots, written beside the film.

It is the page a person reads between `--stop-after` and `--resume`: per shot the keyframe, the
clip (when there is one), the prompt, duration, camera, transition, subtitle, the seed used, the
shapes probe's reading of the clip, and the error if the shot failed. With a scenes model the
scenes grader's verdict takes the probe's place: passed (and what it saw) or failed (and why),
in the page and on a line under each row of the sheet. Paths in the page are relative, so the
film folder can be moved or served as it is.
"""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nanosora.atomic import atomic_path
from nanosora.story.keyframes import read_image
from nanosora.story.montage import fit_frame
from nanosora.story.schema import Script, Shot, ShotList
from nanosora.video.io import VideoError, contact_sheet, read_video

THUMB = 64  # px, cell size of the contact sheet (scaled 2x there)


@dataclass(frozen=True)
class ShotView:
    """What the storyboard shows of one shot besides its shot-list entry."""

    keyframe: Path | None = None
    clip: Path | None = None
    seed: int | None = None
    status: str = "pending"  # pending, done or failed
    error: str = ""
    probe: str = ""  # e.g. "red circle left (matches)"; scenes: the grader's reason or reading
    verdict: str = ""  # scenes: "passed" or "failed"; "" where no grader judged the clip


def _sheet_row(view: ShotView) -> np.ndarray:
    """Five thumbnails `(5, THUMB, THUMB, 3)`: the keyframe, then four frames of the clip (or black)."""
    cells = np.zeros((5, THUMB, THUMB, 3), np.uint8)
    if view.keyframe is not None and view.keyframe.is_file():
        try:
            cells[0] = fit_frame(read_image(view.keyframe, ""), THUMB, THUMB)
        except ValueError:
            pass  # an unreadable keyframe shows as black; the page says why
    if view.clip is not None and view.clip.is_file():
        try:
            clip = read_video(view.clip)
        except VideoError:
            return cells
        for c, t in enumerate(np.linspace(0, len(clip) - 1, 4).round().astype(int)):
            cells[1 + c] = fit_frame(clip[t], THUMB, THUMB)
    return cells


def write_sheet(path: str | os.PathLike, shots: list[Shot], views: list[ShotView]) -> Path:
    """PNG: one row per shot (keyframe, then 4 clip frames), labelled id, duration and prompt;
    with a line under each row for the grader's verdict when there is one."""
    rows = [_sheet_row(v) for v in views]
    labels = [
        f"{s.id} {s.duration:g}s [{v.status}] {s.prompt}" for s, v in zip(shots, views, strict=True)
    ]
    if not any(v.verdict for v in views):
        contact_sheet(path, rows, labels, frames_per_video=5, scale=2)
        return Path(path)
    parts = []
    for row, label, view in zip(rows, labels, views, strict=True):
        parts += [contact_sheet(path, [row], [label], frames_per_video=5, scale=2)]
        parts += [_verdict_line(view, parts[-1].shape[1])]
    with atomic_path(Path(path)) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(np.concatenate(parts), cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write PNG")
    return Path(path)


def _verdict_line(view: ShotView, width: int) -> np.ndarray:
    """A 16 px strip: "passed: what the grader saw" in green or "failed: why" in red."""
    strip = np.full((16, width, 3), 32, np.uint8)
    text = f"{view.verdict or 'not graded'}: {view.probe}".encode("ascii", "replace").decode()
    while (
        len(text) > 4 and cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] > width - 4
    ):
        text = text[:-4] + "..."
    color = {"passed": (90, 220, 90), "failed": (240, 90, 90)}.get(view.verdict, (200, 200, 200))
    cv2.putText(strip, text, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return strip


def _rel(target: Path | None, base: Path) -> str:
    """`target` relative to the page's folder, URL-escaped for an attribute."""
    return html.escape(os.path.relpath(target, base)) if target is not None else ""


def _shot_html(shot: Shot, view: ShotView, base: Path) -> str:
    """One table row of the storyboard page."""
    e = html.escape
    kf = (
        f'<img src="{_rel(view.keyframe, base)}" width="128">'
        if view.keyframe and view.keyframe.is_file()
        else "-"
    )
    clip = (f'<video src="{_rel(view.clip, base)}" width="128" loop muted autoplay></video>'
            if view.clip and view.clip.is_file() else "-")  # fmt: skip
    verdict = f'<b class="{e(view.verdict)}">{e(view.verdict)}</b><br>' if view.verdict else ""
    status = e(view.status) + (
        f'<br><span class="err">{e(view.error)}</span>' if view.error else ""
    )
    return (
        f"<tr><td>{e(shot.id)}</td><td>{kf}</td><td>{clip}</td>"
        f"<td><b>{e(shot.prompt)}</b><br>{e(shot.description)}</td>"
        f"<td>{shot.duration:g}s<br>{e(shot.transition)}<br>{e(shot.camera)}</td>"
        f"<td>{e(shot.caption or '')}</td><td>{'' if view.seed is None else view.seed}</td>"
        f"<td>{verdict}{e(view.probe)}</td><td>{status}</td></tr>"
    )


def write_html(path: str | os.PathLike, script: Script, shots: ShotList, views: list[ShotView],
               film: Path | None = None, sheet: Path | None = None) -> Path:  # fmt: skip
    """The storyboard page: script, shot table, the film if it exists."""
    p = Path(path)
    base, e = p.parent, html.escape
    scenes = "".join(f"<li><b>{e(s.heading)}</b>: {e(s.summary)}</li>" for s in script.scenes)
    rows = "".join(_shot_html(s, v, base) for s, v in zip(shots.shots, views, strict=True))
    film_html = (f'<video src="{_rel(film, base)}" controls width="384"></video>'
                 if film is not None and film.is_file() else "")  # fmt: skip
    sheet_html = f'<p><img src="{_rel(sheet, base)}"></p>' if sheet is not None else ""
    judged = "verdict" if any(v.verdict for v in views) else "probe"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(script.title)}</title>
<style>body{{font-family:sans-serif;margin:2em;background:#111;color:#ddd}}
table{{border-collapse:collapse}}td,th{{border:1px solid #444;padding:4px;vertical-align:top}}
.err,.failed{{color:#f66}}.passed{{color:#6f6}}img,video{{image-rendering:pixelated;background:#000}}</style></head><body>
<h1>{e(script.title)}</h1><p><i>{e(script.logline)}</i></p>{film_html}<h2>Scenes</h2><ol>{scenes}</ol>
<h2>Shots</h2><table><tr><th>id</th><th>keyframe</th><th>clip</th><th>prompt / description</th>
<th>timing</th><th>subtitle</th><th>seed</th><th>{judged}</th><th>status</th></tr>{rows}</table>
{sheet_html}</body></html>
"""
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(page, encoding="utf-8")
    return p
