"""Draw the scenes benchmark score of each category against training compute, one line per run.

    .venv/bin/python scripts/scenes_compute_plot.py RUN [RUN ...] [--out docs/scenes_compute.png]
        [--bench bench_cfg3 bench] [--val-cache CACHE --val-out docs/scenes_val_loss.png]

A RUN is a DiT run directory whose snapshots (kept with snapshot_every, or exported) were
benchmarked:

    nanosora train export RUN                                  # -> RUN/snapshots/step_N
    nanosora bench-scenes --model RUN/snapshots/step_N -o RUN/snapshots/step_N/bench ...

Compute is the analytic training FLOPs of the run's model (bench/mfu.py: forward and backward,
3x the forward matmuls) times the clips it had seen at that step (step x batch size). It also
prints, as markdown tables, what each snapshot's failed clips got wrong (the grader's failure
kinds, over all categories), and which shape its misdrawn objects took: another named object's
(one object's shape leaking onto another) or one the prompt does not name.

With ``--val-cache`` (a latent cache of clips no run trained on) it also draws every snapshot's
validation loss against compute (train/dit.py's ``level_losses``, the mean over its noise levels,
kept in the snapshot's ``val_loss.json``): smoother than a benchmark of a few hundred clips, so
model sizes can be told apart earlier.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import ticker  # noqa: E402

from nanosora.config import DiTConfig, DiTTrainConfig, load_config  # noqa: E402
from nanosora.data.cache import LatentCache  # noqa: E402
from nanosora.models.dit import VideoDiT  # noqa: E402
from nanosora.pipeline import load_module  # noqa: E402
from nanosora.shapes.grader import FAILURE_KINDS  # noqa: E402
from nanosora.shapes.grammar import CATEGORIES, parse  # noqa: E402
from nanosora.shapes.world import COLORS, SHAPES  # noqa: E402
from nanosora.train.dit import level_losses  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ("bench",)  # each snapshot's report folder, by default


@functools.cache
def _mfu():
    spec = importlib.util.spec_from_file_location("mfu", ROOT / "bench/mfu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def reports(run: Path, bench: tuple[str, ...] = BENCH) -> list[Path]:
    """The report.json of each benchmarked snapshot of a run, in step order: from the first of
    the ``bench`` folders that the snapshot has."""
    found = []
    for snapshot in sorted(run.glob("snapshots/step_*")):
        paths = [snapshot / name / "report.json" for name in bench]
        found += [p for p in paths if p.is_file()][:1]
    return found


@functools.cache
def run_compute(run: Path) -> tuple[str, float]:
    """(label, training FLOPs per step) of a DiT run, from its config and cache (read once per
    run: opening a training cache loads all of it)."""
    mfu = _mfu()
    cfg = load_config(DiTTrainConfig, run / "config.yaml")
    latent = LatentCache(cfg.cache).latent_shape  # (c, t, h, w)
    model = VideoDiT(cfg.dit)
    grid = model.grid(*latent[1:])
    per_step = 3 * mfu.dit_flops(cfg.dit, 1, grid, mfu.TEXT_LEN) * cfg.train.batch_size
    pt, ph = cfg.dit.patch_t, cfg.dit.patch_hw
    label = (
        f"{run.name}: {model.num_params() / 1e6:.1f}M params, {grid[0] * grid[1] * grid[2]} tokens"
        f" ({latent[1]} latent frames, patch {pt}x{ph}x{ph}), lr {cfg.optim.lr:g}"
        + ("" if cfg.dit.pooled_text else ", no pooled text")
    )
    return label, per_step


def step_of(snapshot: Path) -> int:
    return int(snapshot.name.removeprefix("step_"))


def run_points(
    run: Path, bench: tuple[str, ...] = BENCH
) -> tuple[str, list[tuple[float, dict[str, float]]]]:
    """(label, [(training FLOPs, {category: score})]) of a run's benchmarked snapshots."""
    label, per_step = run_compute(run)
    points = []
    for report in reports(run, bench):
        summary = json.loads(report.read_text())["summary"]
        scores = {c: summary[c]["all"]["score"] for c in CATEGORIES if c in summary}
        points.append((step_of(report.parents[1]) * per_step, scores))
    return label, points


@functools.cache
def open_val_cache(path: Path) -> LatentCache:
    return LatentCache(path)


def snapshot_val_loss(snapshot: Path, cache: Path, clips: int) -> float:
    """A snapshot's mean validation loss on the first ``clips`` clips of ``cache``, computed once
    and kept in its ``val_loss.json`` (computed again for another cache or clip count)."""
    path, key = snapshot / "val_loss.json", {"cache": str(cache), "clips": clips}
    if path.is_file():
        kept = json.loads(path.read_text())
        if {k: kept.get(k) for k in key} == key:
            return kept["mean"]
    dit = load_module(snapshot / "transformer", DiTConfig, VideoDiT, "dit")
    losses = level_losses(dit, open_val_cache(cache), clips)
    mean = sum(losses.values()) / len(losses)
    path.write_text(
        json.dumps({**key, "levels": {f"{s:g}": v for s, v in losses.items()}, "mean": mean})
    )
    return mean


def val_points(run: Path, cache: Path, clips: int) -> tuple[str, list[tuple[float, float]]]:
    """(label, [(training FLOPs, mean validation loss)]) of every snapshot of a run."""
    label, per_step = run_compute(run)
    snapshots = sorted(run.glob("snapshots/step_*"))
    return label, [(step_of(s) * per_step, snapshot_val_loss(s, cache, clips)) for s in snapshots]


def plot_val_loss(runs: list[Path], cache: Path, clips: int, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for run in runs:
        label, points = val_points(run, cache, clips)
        ax.plot([f / 1e15 for f, _ in points], [v for _, v in points], marker="o", label=label)
        for flops, loss in points:
            print(f"| {run.name} | {flops / 1e15:.2f} | {loss:.4f} |")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("training compute (PFLOP)")
    ax.set_ylabel(f"validation loss ({clips} unseen clips)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("velocity MSE on unseen clips against training compute")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def snapshot_reports(
    runs: list[Path], bench: tuple[str, ...] = BENCH
) -> list[tuple[str, Path, dict]]:
    """("RUN step_N", path, contents) of every benchmarked snapshot's report.json, in step order."""
    return [
        (f"{run.name} {report.parents[1].name}", report, json.loads(report.read_text()))
        for run in runs
        for report in reports(run, bench)
    ]


def kinds_table(runs: list[Path], bench: tuple[str, ...] = BENCH) -> str:
    """A markdown table: per benchmarked snapshot, its failed clips by failure kind."""
    rows = []
    for name, report, data in snapshot_reports(runs, bench):
        if "failures" not in data:
            raise SystemExit(f"{report} has no failure kinds: run its bench-scenes again")
        rows.append((name, len(data["clips"]), data["failures"]["all"]))
    kinds = [k for k in FAILURE_KINDS if any(f.get(k) for _, _, f in rows)]
    lines = ["| snapshot | failed | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
    for name, n, f in rows:
        counts = " | ".join(str(f.get(k, 0)) for k in kinds)
        lines.append(f"| {name} | {sum(f.values())} of {n} | {counts} |")
    return "\n".join(lines)


def misdrawn_shapes(clips: list[dict]) -> tuple[int, Counter]:
    """(wrong-shape failures, misdrawn objects by (named shape, drawn shape, whether the drawn
    shape is another named object's)) from a report's clips, counting the objects of prompts that
    name exactly two shapes, where a wrong shape is either the other named one or the third. A
    clip's ``seen`` lists what the grader found as "[size] colour shape" items."""
    wrong, objects = 0, Counter()
    for clip in clips:
        if clip.get("kind") != "wrong shape":
            continue
        wrong += 1
        things = parse(clip["prompt"])[0].things
        shapes = {t.shape for t in things}
        if len(shapes) != 2:
            continue
        named = {(t.color, t.shape) for t in things}
        own = {t.color: t.shape for t in things}
        for item in clip["seen"].split(", "):
            words = item.split()
            colour = next((w for w in words if w in COLORS), None)
            shape = next((w for w in words if w in SHAPES), None)
            if colour in own and shape and (colour, shape) not in named:
                objects[(own[colour], shape, shape in shapes)] += 1
    return wrong, objects


def leak_table(runs: list[Path], bench: tuple[str, ...] = BENCH) -> str:
    """A markdown table: per benchmarked snapshot, its misdrawn objects by the shape they took."""
    lines = [
        "| snapshot | wrong-shape clips | misdrawn objects (prompts of two shapes): as the other"
        " named shape | as the third shape | leaving out circles drawn as squares: other named"
        " | third |",
        "|---|---|---|---|---|---|",
    ]
    for name, _, data in snapshot_reports(runs, bench):
        wrong, objects = misdrawn_shapes(data["clips"])
        counts = [0, 0, 0, 0]  # other named, third; the same without circles drawn as squares
        for (own, drawn, other_named), n in objects.items():
            column = 0 if other_named else 1
            counts[column] += n
            if (own, drawn) != ("circle", "square"):
                counts[2 + column] += n
        lines.append(f"| {name} | {wrong} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "docs/scenes_compute.png")
    ap.add_argument(
        "--bench",
        nargs="+",
        default=["bench"],
        help="report folders of a snapshot, the first found is read (e.g. bench_cfg3 bench)",
    )
    ap.add_argument("--val-cache", type=Path, help="a latent cache of clips no run trained on")
    ap.add_argument("--val-clips", type=int, default=256)
    ap.add_argument("--val-out", type=Path, default=ROOT / "docs/scenes_val_loss.png")
    args = ap.parse_args()
    if args.val_cache:
        print("| run | training compute (PFLOP) | validation loss |\n|---|---|---|")
        plot_val_loss(args.runs, args.val_cache, args.val_clips, args.val_out)
    fig, axes = plt.subplots(2, 4, figsize=(13, 5.6), sharex=True, sharey=True)
    for run in args.runs:
        label, points = run_points(run, tuple(args.bench))
        if not points:
            raise SystemExit(f"{run}: no snapshots/step_*/{{{','.join(args.bench)}}}/report.json")
        for ax, category in zip(axes.flat, CATEGORIES):
            xs = [flops / 1e15 for flops, s in points if category in s]
            ys = [100 * s[category] for _, s in points if category in s]
            ax.plot(xs, ys, marker="o", label=label)
    for ax, category in zip(axes.flat, CATEGORIES):
        ax.set_title(category)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3, which="both")
    for ax in axes[1]:
        ax.set_xlabel("training compute (PFLOP)")
    for ax in axes[:, 0]:
        ax.set_ylabel("score (%)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, frameon=False)
    fig.suptitle("scenes benchmark score per category against training compute")
    fig.tight_layout(rect=(0, 0.03 + 0.035 * len(labels), 1, 1))
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    print(kinds_table(args.runs, tuple(args.bench)))
    print()
    print(leak_table(args.runs, tuple(args.bench)))


if __name__ == "__main__":
    main()
