"""The scenes benchmark: grade a model, or any folder of videos, on the compositional suite.

- `bench_scenes` (``nanosora bench-scenes --model DIR -o OUT``): generates every prompt of
  `shapes.scenes.suite` (per category 32 trained compositions, the held-out compositions and 16
  held-out phrasings) with 4 seeds into ``OUT/videos`` and a prompt file ``OUT/prompts.jsonl``,
  then grades them as below. Generation resumes: clips already written are kept.
- `grade_videos` (``nanosora grade --videos DIR --prompts FILE -o OUT``): reads each video,
  parses its prompt with the scenes grammar and grades it (`shapes.grader`); a prompt's group
  (trained composition, held-out composition, held-out phrasing) is read from the grammar unless
  the file gives it. Writes ``report.json`` (scores per category and group, the failures per
  category by kind, every clip's verdict, reason and failure kind) and a self-contained
  ``report.html`` (the scores, the failure kinds, and per category a grid of clips with their
  verdicts and failure reasons).
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

from nanosora.atomic import write_text_atomic
from nanosora.data.datasets import frames_to_tensor, tensor_to_frames
from nanosora.data.manifest import read_manifest
from nanosora.models.vae import VideoVAE
from nanosora.pipeline import Pipeline, load_vae, replace_cfg
from nanosora.shapes import grader, scenes
from nanosora.shapes.grammar import CATEGORIES, Category, parse
from nanosora.video.io import VideoError, probe, read_video, write_video

GROUPS = ("trained", "heldout_composition", "heldout_phrasing")
GROUP_TITLES = {
    "trained": "trained compositions",
    "heldout_composition": "held-out compositions",
    "heldout_phrasing": "held-out phrasings",
}
VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")
SIZE = (scenes.SIZE, scenes.SIZE)


def read_prompts(prompts: str | Path, videos: str | Path) -> list[dict]:
    """Prompt file -> ``[{"path", "text", "group"?, "seed"?}]`` with absolute video paths.

    A ``.txt`` file has one prompt per line for the videos of ``videos`` in name order (as
    ``nanosora generate --prompts FILE -o DIR`` writes them); a manifest (``.jsonl``, ``.csv``,
    ``.parquet``) has ``path`` (relative to ``videos``) and ``text`` columns.
    """
    prompts, videos = Path(prompts), Path(videos)
    if not videos.is_dir():
        raise FileNotFoundError(f"video folder {videos} does not exist")
    if prompts.suffix == ".txt":
        if not prompts.is_file():
            raise FileNotFoundError(f"prompt file {prompts} not found")
        lines = [line.strip() for line in prompts.read_text().splitlines() if line.strip()]
        files = sorted(p for p in videos.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if len(files) != len(lines):
            raise ValueError(
                f"{prompts} has {len(lines)} prompts but {videos} has {len(files)} videos "
                f"({', '.join(VIDEO_SUFFIXES)}); a .txt file needs one prompt per video"
            )
        return [{"path": str(f), "text": t} for f, t in zip(files, lines)]
    rows = read_manifest(prompts).to_dict("records")
    for i, row in enumerate(rows):
        row["path"] = str(videos / row["path"])
        if not Path(row["path"]).is_file():
            raise FileNotFoundError(f"{prompts} row {i}: video {row['path']} not found")
    return rows


def _group(text: str, where: str) -> tuple[scenes.Composition, str]:
    """The composition of a prompt and its benchmark group, read from the grammar."""
    try:
        comp, phrasing = parse(text)
    except ValueError as e:
        raise ValueError(f"{where}: {e}") from None
    if scenes.is_held_out(comp):
        return comp, "heldout_composition"
    return comp, "heldout_phrasing" if phrasing == "heldout" else "trained"


def grade_videos(
    videos: str | Path,
    prompts: str | Path,
    out: str | Path,
    title: str = "nanosora scenes benchmark",
    grid: int = 1,
    workers: int = 1,
) -> Path:
    """Grade every video of a prompt file; write ``report.json`` and ``report.html`` into ``out``.

    ``grid``: clips per prompt shown in the HTML grid; ``workers``: grading processes. Returns
    the report.json path.
    """
    rows = read_prompts(prompts, videos)
    jobs = []
    for i, row in enumerate(rows):
        comp, group = _group(str(row["text"]), f"{prompts} row {i}")
        jobs.append((str(row["path"]), comp, str(row.get("group") or group)))
    chunks = [jobs[lo : lo + 64] for lo in range(0, len(jobs), 64)]
    if workers > 1:
        # spawn, not fork: the parent may hold torch/OpenMP threads, which fork can deadlock.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            verdicts = [v for chunk in pool.map(_verdicts, chunks) for v in chunk]
    else:
        verdicts = [v for chunk in chunks for v in _verdicts(chunk)]
    clips, shown = [], defaultdict(list)
    for row, (path, comp, group), verdict in zip(rows, jobs, verdicts):
        clip = {
            "path": path, "prompt": row["text"], "category": comp.category, "group": group,
            "seed": row.get("seed"), "passed": verdict.passed, "reason": verdict.reason,
            "kind": verdict.kind, "seen": verdict.seen,
        }  # fmt: skip
        clips.append(clip)
        same = [c for c, _ in shown[comp.category] if c["prompt"] == clip["prompt"]]
        if len(same) < grid and not verdict.reason.startswith("unreadable"):
            shown[comp.category].append((clip, _read(path)))
    report = {"title": title, "summary": summarise(clips), "failures": failure_kinds(clips), "clips": clips}  # fmt: skip
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "report.json", json.dumps(report, indent=2))
    write_text_atomic(out / "report.html", _html(report, shown))
    return out / "report.json"


def _verdicts(jobs: list[tuple[str, scenes.Composition, str]]) -> list[grader.Verdict]:
    """Grade ``(video path, composition, group)`` jobs; an unreadable video fails with why."""
    out = []
    for path, comp, _ in jobs:
        try:
            out.append(grader.grade(_read(path), comp))
        except VideoError as e:
            out.append(grader.Verdict(False, f"unreadable video: {e}", "nothing", "unreadable"))
    return out


def _read(path: str) -> np.ndarray:
    """Decode a clip at the world's 64x64 (other sizes are resized)."""
    info = probe(path)
    return read_video(path, size=None if (info.height, info.width) == SIZE else SIZE)


def summarise(clips: list[dict]) -> dict:
    """Pass rate per category and group (and over all groups, and over all categories)."""
    out: dict = {}
    for cat in [*CATEGORIES, "all"]:
        mine = [c for c in clips if cat in (c["category"], "all")]
        if not mine:
            continue
        out[cat] = {}
        for group in [*GROUPS, "all"]:
            sel = [c for c in mine if group in (c["group"], "all")]
            if sel:
                passed = sum(c["passed"] for c in sel)
                out[cat][group] = {"score": round(passed / len(sel), 4), "passed": passed, "n": len(sel)}  # fmt: skip
    return out


def failure_kinds(clips: list[dict]) -> dict[str, dict[str, int]]:
    """Failed clips per category (and over all) by failure kind, in `grader.FAILURE_KINDS`
    order; kinds with no clip are left out."""
    out: dict[str, dict[str, int]] = {}
    for cat in [*CATEGORIES, "all"]:
        failed = [c["kind"] for c in clips if not c["passed"] and cat in (c["category"], "all")]
        if any(c["category"] == cat for c in clips) or (cat == "all" and clips):
            out[cat] = {k: failed.count(k) for k in grader.FAILURE_KINDS if k in failed}
    return out


def _mp4_data_uri(frames: np.ndarray) -> str:
    """A clip as an inline mp4 (a GIF of a model's thousands of colours takes ~40x longer)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write_video(Path(tmp) / "clip.mp4", frames, fps=8.0)
        return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode()


def _score(cell: dict | None) -> str:
    return "&ndash;" if cell is None else f"{100 * cell['score']:.1f}% <small>({cell['passed']}/{cell['n']})</small>"  # fmt: skip


def _html(report: dict, shown: dict[str, list[tuple[dict, np.ndarray]]]) -> str:
    """The report page: a score table, then per category its scores and a grid of clips."""
    summary = report["summary"]
    head = "".join(f"<th>{GROUP_TITLES.get(g, 'all')}</th>" for g in [*GROUPS, "all"])
    rows = "".join(
        f"<tr><th>{cat}</th>"
        + "".join(f"<td>{_score(s.get(g))}</td>" for g in [*GROUPS, "all"])
        + "</tr>"  # fmt: skip
        for cat, s in summary.items()
    )
    parts = [
        f"<h1>{html.escape(report['title'])}</h1>",
        f'<table class="scores"><tr><th>category</th>{head}</tr>{rows}</table>',
        _failures_html(report["failures"]),
    ]
    for cat in CATEGORIES:
        if cat not in shown:
            continue
        cells = []
        for clip, frames in shown[cat]:
            verdict = "pass" if clip["passed"] else "fail"
            reason = html.escape(clip["reason"]) if not clip["passed"] else ""
            cells.append(
                f'<figure class="{verdict}"><video src="{_mp4_data_uri(frames)}" width="128" height="128" autoplay loop muted playsinline></video>'
                f"<figcaption><b>{verdict.upper()}</b> {html.escape(str(clip['prompt']))}"
                f'<br><i>{GROUP_TITLES.get(clip["group"], clip["group"])}</i>'
                + (f'<br><span class="reason">{reason}</span>' if reason else "")
                + f'<br><span class="seen">saw: {html.escape(clip["seen"])}</span></figcaption></figure>'
            )  # fmt: skip
        scores = " &middot; ".join(
            f"{GROUP_TITLES[g]} {_score(summary[cat].get(g))}" for g in GROUPS
        )
        parts += [f'<h2 id="{cat}">{cat}</h2><p>{scores}</p>', f'<div class="grid">{"".join(cells)}</div>']  # fmt: skip
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}"
        ".grid{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;width:136px;font-size:11px;padding:3px}"
        "figure.pass{background:#e6f4e6}figure.fail{background:#fbe7e7}.reason{color:#a00}"
        ".seen{color:#555}video{image-rendering:pixelated;display:block;background:#000}"
    )
    return f"<!doctype html><meta charset=utf-8><title>{html.escape(report['title'])}</title><style>{style}</style>{''.join(parts)}"  # fmt: skip


def _failures_html(failures: dict[str, dict[str, int]]) -> str:
    """The failed clips of each category by kind, as a table (nothing when none failed)."""
    kinds = [k for k in grader.FAILURE_KINDS if any(k in f for f in failures.values())]
    if not kinds:
        return ""
    head = "".join(f"<th>{k}</th>" for k in kinds)
    rows = "".join(
        f"<tr><th>{cat}</th>" + "".join(f"<td>{f.get(k) or ''}</td>" for k in kinds) + "</tr>"
        for cat, f in failures.items()
    )
    return f'<h2>What failed</h2><table class="failures"><tr><th>category</th>{head}</tr>{rows}</table>'  # fmt: skip


def suite_subset(categories: tuple[Category, ...], per_group: int | None) -> list:
    """The suite's prompts of ``categories``; with ``per_group``, the first N of each group."""
    prompts = scenes.suite(categories)
    if per_group is None:
        return prompts
    counts: dict = defaultdict(int)
    keep = []
    for p in prompts:
        counts[p.category, p.group] += 1
        if counts[p.category, p.group] <= per_group:
            keep.append(p)
    return keep


def ground_truth(text: str, seed: int) -> np.ndarray:
    """A clip of the world realising the composition ``text`` states, drawn from ``seed``."""
    return scenes.truth_clip(text, np.random.default_rng(seed))


def reconstruct(vae: VideoVAE, clips: np.ndarray) -> np.ndarray:
    """uint8 ``(B, T, H, W, 3)`` clips -> the VAE's reconstructions (latent means), uint8."""
    with torch.no_grad():
        video = vae.decode(vae.encode(torch.stack([frames_to_tensor(c) for c in clips])))
    return np.stack([tensor_to_frames(v) for v in video])


def bench_scenes(
    model: str | Path | None,
    out: str | Path,
    seeds: int = 4,
    categories: tuple[Category, ...] = CATEGORIES,
    per_group: int | None = None,
    steps: int | None = None,
    batch_size: int = 16,
    vae: str | Path | None = None,
    cfg_scale: float | None = None,
    cfg_interval: tuple[float, float] | None = None,
    eta: float | None = None,
) -> Path:
    """Generate the suite with a pipeline (default: the shipped model) and grade it.

    Prompt i of the suite with seed round k uses noise seed ``1000 k + i``. ``per_group`` keeps
    the first N prompts of each group per category (a documented subset, when the whole suite
    costs too much). With ``vae`` (a VAE run or pipeline vae/ directory) no model generates:
    each clip is the world's own realisation of its prompt (drawn from the same seed) passed
    through the VAE, so the scores are the most a DiT on those latents can reach.
    ``steps``, ``cfg_scale``, ``cfg_interval`` and ``eta`` override the pipeline's sampler
    (None keeps it); the report's title names the overrides. Returns the report.json path.
    """
    prompts = suite_subset(categories, per_group)
    sampler = {"steps": steps, "cfg_scale": cfg_scale, "cfg_interval": cfg_interval, "eta": eta}
    sampler = {k: v for k, v in sampler.items() if v is not None}
    if sampler and vae is not None:
        raise ValueError(f"sampler settings {sorted(sampler)} do not apply to VAE reconstructions")
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    jobs = [(i, k, f"{i:04d}_s{k}.mp4") for k in range(seeds) for i in range(len(prompts))]
    todo = [job for job in jobs if not _valid(out / "videos" / job[2])]
    if todo:  # a finished run is graded again without loading the model
        if vae is not None:
            autoencoder, fps = load_vae(vae), float(scenes.FPS)
        else:
            pipe = replace_cfg(Pipeline.load(model), **sampler)
            fps = pipe.cfg.fps
        for lo in range(0, len(todo), batch_size):
            chunk = todo[lo : lo + batch_size]
            texts, noise = (
                [prompts[i].text for i, _, _ in chunk],
                [1000 * k + i for i, k, _ in chunk],
            )
            if vae is not None:
                truth = np.stack([ground_truth(t, n) for t, n in zip(texts, noise)])
                videos = reconstruct(autoencoder, truth)
            else:
                videos = pipe.generate(texts, seeds=noise)
            for (_, _, name), video in zip(chunk, videos):
                write_video(out / "videos" / name, video, fps=fps)
            print(f"{'reconstructed' if vae else 'generated'} {lo + len(chunk)}/{len(todo)} clips", flush=True)  # fmt: skip
    rows = [
        {"path": name, "text": prompts[i].text, "category": prompts[i].category,
         "group": prompts[i].group, "seed": 1000 * k + i}
        for i, k, name in jobs
    ]  # fmt: skip
    prompt_file = out / "prompts.jsonl"
    write_text_atomic(prompt_file, "".join(json.dumps(r) + "\n" for r in rows))
    what = f"reconstructions by the VAE {vae}" if vae else model or "the shipped shapes model"
    if sampler:
        what = f"{what} ({', '.join(f'{k}={v}' for k, v in sampler.items())})"
    return grade_videos(
        out / "videos", prompt_file, out, title=f"nanosora scenes benchmark: {what}"
    )


def _valid(path: Path) -> bool:
    """True if ``path`` is a complete clip already (a resumed benchmark keeps it)."""
    try:
        return probe(path).num_frames > 0
    except VideoError:
        return False
