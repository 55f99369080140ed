"""Curation benchmark: nanosora vs Data-Juicer itself on the same videos, in one run.

    python bench/curate.py [--num 56] [--np 2] [--workdir /tmp/nanosora-bench-curate]

Pipeline (both sides): probe + video_duration_filter + video_resolution_filter +
video_aspect_ratio_filter + video_motion_score_filter + video_split_by_scene_mapper, on
synthetic multi-scene videos (``nanosora.curate.synth``: 256x256, 24 fps, ~6 s, hard cuts; a
quarter of them are meant to be dropped: too short, too wide, static black).

Data-Juicer (py-data-juicer 1.6.1) runs as a subprocess in its own virtualenv (``--djvenv``,
created on first use): torch 2.13.0 (the local CPU build) first, then py-data-juicer with the
torch pin, ``aiohttp`` (it does not import without it), ``av==13.1.0`` (its video operators fail
on PyAV 18 and drop samples silently), headless OpenCV and scenedetect (installed up front, so it
does not install them itself through uv), and ``imageio-ffmpeg``, whose ffmpeg binary is linked
into the venv's ``bin`` (Data-Juicer's scene split cuts clips with the ffmpeg command).

Printed: wall time and videos/s of each side and their ratio; a check that Data-Juicer really
computed every video (a second, untimed Data-Juicer run with open thresholds must return a valid
duration and motion score for every video); keep/drop agreement per video on the shared filters;
scene-count agreement on kept videos; motion-score differences.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import yaml

FILTERS = [
    {"video_duration_filter": {"min_duration": 3, "max_duration": 100, "video_backend": "av"}},
    {"video_resolution_filter": {"min_width": 64, "min_height": 64}},
    {"video_aspect_ratio_filter": {"min_ratio": "9/21", "max_ratio": "21/9"}},
    {"video_motion_score_filter": {"min_score": 0.25, "sampling_fps": 2}},
]
SPLIT = {"video_split_by_scene_mapper": {"detector": "ContentDetector", "threshold": 27.0,
                                         "min_scene_len": 15}}  # fmt: skip
OPEN = [  # the same statistics with thresholds that keep everything: DJ's per-video stats
    {"video_duration_filter": {"min_duration": 0, "max_duration": 1e9, "video_backend": "av"}},
    {"video_motion_score_filter": {"min_score": -10, "sampling_fps": 2}},
]


def ensure_djvenv(venv: Path) -> Path:
    """Create the Data-Juicer virtualenv if needed (module docstring); returns its python."""
    py = venv / "bin" / "python"
    if (venv / ".ready").exists():
        return py
    pin = venv.parent / f"{venv.name}-constraints.txt"
    pin.write_text("torch==2.13.0\n")
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    subprocess.run(pip + ["torch==2.13.0"], check=True)
    subprocess.run(pip + ["-c", str(pin), "py-data-juicer==1.6.1", "aiohttp", "av==13.1.0",
                          "opencv-python-headless==5.0.0.93", "scenedetect-headless==0.7.2",
                          "imageio-ffmpeg"], check=True)  # fmt: skip
    out = subprocess.run([str(py), "-c", "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())"],
                         check=True, capture_output=True, text=True)  # fmt: skip
    link = venv / "bin" / "ffmpeg"
    link.unlink(missing_ok=True)
    link.symlink_to(out.stdout.strip())
    (venv / ".ready").touch()
    return py


def run_datajuicer(
    py: Path, work: Path, dataset: Path, process: list, np: int, name: str
) -> tuple[float, list]:
    """Run dj-process on ``dataset``; returns (wall seconds, exported samples)."""
    out_dir = work / name
    export = out_dir / "export.jsonl"
    for p in process:
        if "video_split_by_scene_mapper" in p:
            p["video_split_by_scene_mapper"]["save_dir"] = str(out_dir / "clips")
    cfg = {"project_name": name, "dataset_path": str(dataset), "export_path": str(export),
           "np": np, "open_tracer": False, "use_cache": False, "keep_stats_in_res_ds": True,
           "work_dir": str(out_dir), "process": process}  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "recipe.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PATH": f"{py.parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(["nice", "-n", "19", str(py.parent / "dj-process"), "--config",
                          str(out_dir / "recipe.yaml")], env=env, capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - t0
    (out_dir / "log.txt").write_text(res.stdout + res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"Data-Juicer failed ({res.returncode}); see {out_dir / 'log.txt'}")
    samples = [json.loads(line) for line in export.read_text().splitlines() if line.strip()]
    return seconds, samples


def run_nanosora(work: Path, manifest: Path, np: int) -> tuple[float, list, list]:
    """Run the same recipe with nanosora (fresh journal); returns (seconds, rows, rejects)."""
    from nanosora.curate.rejects import read_rejects
    from nanosora.curate.runner import CurateConfig, main

    out_dir = work / "nanosora"
    if out_dir.exists():
        import shutil

        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    recipe = {"dataset_path": str(manifest), "export_path": str(out_dir / "out.jsonl"), "np": np,
              "process": FILTERS + [SPLIT]}  # fmt: skip
    (out_dir / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    t0 = time.perf_counter()
    main(CurateConfig(recipe=out_dir / "recipe.yaml", progress=False))
    seconds = time.perf_counter() - t0
    rows = [json.loads(line) for line in (out_dir / "out.jsonl").read_text().splitlines()]
    return seconds, rows, read_rejects(out_dir / "out.rejects.jsonl")


def video_id(path: str) -> str:
    """``0007_multi`` from any path of the video or of a clip cut from it."""
    stem = Path(path).stem
    return "_".join(stem.split("_")[:2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=56)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/nanosora-bench-curate"))
    ap.add_argument("--djvenv", type=Path, default=Path("/tmp/djvenv"))
    args = ap.parse_args()
    from nanosora.curate.synth import make_dataset

    work = args.workdir
    manifest = make_dataset(work / "data", args.num, seed=0, scale=4)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    dj_data = work / "data" / "dj.jsonl"
    dj_data.write_text("".join(json.dumps({"videos": [str(work / "data" / r["path"])],
                                           "text": f"<__dj__video> {r['text']}"}) + "\n"
                               for r in rows))  # fmt: skip
    py = ensure_djvenv(args.djvenv)
    ids = [video_id(r["path"]) for r in rows]
    print(f"{len(rows)} videos, np={args.np}, machine: {os.cpu_count()} cores")

    ns_s, ns_rows, ns_rejects = run_nanosora(work, manifest, args.np)
    dj_s, dj_samples = run_datajuicer(py, work, dj_data, FILTERS + [SPLIT], args.np, "dj")
    report(args, ids, ns_s, ns_rows, ns_rejects, dj_s, dj_samples, py, work, dj_data)


def report(args, ids, ns_s, ns_rows, ns_rejects, dj_s, dj_samples, py, work, dj_data) -> None:  # noqa: ANN001
    """Throughput ratio, Data-Juicer completeness, keep/drop and scene agreement."""
    n = len(ids)
    print(f"nanosora   : {ns_s:7.1f} s  {n / ns_s:6.2f} videos/s")
    print(f"Data-Juicer: {dj_s:7.1f} s  {n / dj_s:6.2f} videos/s")
    print(f"speed-up   : {dj_s / ns_s:.2f}x (target >= 2x)")
    # Did Data-Juicer really compute every video? Open thresholds must keep all with valid stats.
    _, open_samples = run_datajuicer(py, work, dj_data, OPEN, args.np, "dj_open")
    stats = {video_id(s["videos"][0]): s["__dj__stats__"] for s in open_samples}
    valid = [i for i in ids if i in stats and stats[i]["video_duration"][0] > 0
             and stats[i]["video_motion_score"][0] >= 0]  # fmt: skip
    print(f"DJ computed: {len(valid)}/{n} videos with a valid duration and motion score")
    ns_keep = {video_id(r["path"]) for r in ns_rows}
    dj_keep = {video_id(s["videos"][0]) for s in dj_samples}
    agree = sum((i in ns_keep) == (i in dj_keep) for i in ids)
    print(f"keep/drop  : nanosora keeps {len(ns_keep)}, DJ keeps {len(dj_keep)}; "
          f"agreement {agree}/{n} = {100 * agree / n:.1f}% (target >= 95%)")  # fmt: skip
    ns_scenes: dict[str, int] = {}
    for r in ns_rows:
        ns_scenes[video_id(r["path"])] = int(r.get("scene_count") or 1)
    dj_scenes = {video_id(s["videos"][0]): len(s["videos"]) for s in dj_samples}
    both = sorted(set(ns_scenes) & set(dj_scenes))
    same = sum(ns_scenes[i] == dj_scenes[i] for i in both)
    print(f"scenes     : same scene count on {same}/{len(both)} videos kept by both; "
          f"clips nanosora {sum(ns_scenes.values())}, DJ {sum(dj_scenes.values())}")  # fmt: skip
    ns_motion = {}
    for r in ns_rows + ns_rejects:
        if r.get("motion_score") is not None:
            ns_motion[video_id(r["path"])] = r["motion_score"]
    diffs = [abs(ns_motion[i] - stats[i]["video_motion_score"][0]) for i in valid if i in ns_motion]
    if diffs:
        print(f"motion     : max |nanosora - DJ| = {max(diffs):.4f} over {len(diffs)} videos")
    by_op: dict[str, int] = {}
    for r in ns_rejects:
        by_op[r["op"]] = by_op.get(r["op"], 0) + 1
    print(f"nanosora rejects by op: {by_op}")


if __name__ == "__main__":
    main()
