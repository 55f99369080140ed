"""Image-to-video, extension and new-concept checks on the shapes world.

- ``eval_image_to_video``: real clips' first frames + their canonical captions -> generated
  clips. Reports the PSNR of the generated first frame against the given image (the frame is
  given clean, so this is the VAE's fidelity on it) and whether the probe reads the prompted
  colour, shape and direction in the result (does the object start moving the right way?).
- ``eval_extension``: the first 9 frames of a real clip are continued by ``extra`` frames; the
  probe reads the *new* frames only (colour, shape kept; direction continued).
- ``eval_compositions``: adherence on any list of (colour, shape, direction), e.g. the
  fine-tuning demo's new shape over every colour and direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nanosora.evaluate.adherence import generate_and_probe
from nanosora.evaluate.report import write_report
from nanosora.pipeline import Pipeline, replace_cfg
from nanosora.shapes.captions import canonical_caption
from nanosora.shapes.probe import adherence, probe_frames
from nanosora.shapes.world import COLORS, DIRECTIONS, NEW_SHAPES, eval_prompts
from nanosora.video.io import read_video
from nanosora.video.metrics import psnr


def _clips(manifest: str | Path, n: int) -> tuple[pd.DataFrame, Path]:
    m = pd.read_parquet(manifest)
    missing = [c for c in ("path", "color", "shape", "direction") if c not in m.columns]
    if missing:
        raise ValueError(f"{manifest} lacks shapes-world columns {missing}")
    return m.iloc[:n], Path(manifest).parent


def eval_image_to_video(
    pipe: Pipeline, manifest: str | Path, n: int = 32, seed: int = 0, steps: int = 25
) -> dict:
    """First frame of each of ``n`` clips + its caption -> video; PSNR and probe adherence."""
    rows, root = _clips(manifest, n)
    c = pipe.cfg
    psnrs, results, targets = [], [], []
    for i, row in enumerate(rows.itertuples()):
        first = read_video(root / row.path, size=(c.height, c.width), max_frames=1)
        prompt = canonical_caption(row.color, row.shape, row.direction)
        video = pipe.generate([prompt], seeds=[seed + i], steps=steps, prefix=first)[0]
        psnrs.append(
            float(psnr(video[:1].transpose(0, 3, 1, 2), first.transpose(0, 3, 1, 2), 255.0)[0])
        )
        results.append(probe_frames(video))
        targets.append((row.color, row.shape, row.direction))
    return {
        "first_frame_psnr": float(np.mean(psnrs)),
        "first_frame_psnr_min": float(np.min(psnrs)),
        "adherence": adherence(results, targets),
    }


def eval_extension(
    pipe: Pipeline,
    manifest: str | Path,
    n: int = 32,
    context: int = 9,
    extra: int = 8,
    seed: int = 0,
    steps: int = 25,
) -> dict:
    """Continue ``context`` real frames by ``extra``; the probe reads the new frames only."""
    rows, root = _clips(manifest, n)
    c = pipe.cfg
    results, targets = [], []
    for i, row in enumerate(rows.itertuples()):
        clip = read_video(root / row.path, size=(c.height, c.width), max_frames=context)
        prompt = canonical_caption(row.color, row.shape, row.direction)
        video = pipe.extend(prompt, clip, extra, seed=seed + i, steps=steps)
        results.append(probe_frames(video[context:]))
        targets.append((row.color, row.shape, row.direction))
    return {"context": context, "extra": extra, "adherence": adherence(results, targets)}


def eval_compositions(
    pipe: Pipeline,
    items: list[tuple[str, str, str]],
    seeds: int = 1,
    steps: int = 25,
    batch_size: int = 16,
) -> dict:
    """Adherence on the canonical prompts of ``items``; seed of (item i, round k) = 1000 k + i."""
    runs = generate_and_probe(
        pipe, [canonical_caption(*it) for it in items], seeds, steps, batch_size=batch_size
    )
    return adherence([r for *_, r in runs], [items[i] for i, *_ in runs])


def eval_conditioning(
    model: str | Path | None,
    out: str | Path,
    manifest: str | Path | None = None,
    concept: str | None = None,
    lora: str | Path | None = None,
    n: int = 32,
    seeds: int = 4,
    steps: int | None = None,
) -> Path:
    """`nanosora eval --conditioning M` / `--concept SHAPE`: report.json + report.html.
    ``steps``: sampling steps (default: the pipeline's)."""
    pipe = replace_cfg(Pipeline.load(model, lora), steps=steps)
    steps = pipe.cfg.steps
    metrics: dict = {"model": str(model or "shipped"), "lora": str(lora or ""), "steps": steps}
    if manifest is not None:
        metrics["image_to_video"] = eval_image_to_video(pipe, manifest, n, steps=steps)
        metrics["extension"] = eval_extension(pipe, manifest, n, steps=steps)
    if concept is not None:
        if concept not in NEW_SHAPES:
            raise ValueError(f"--concept must be one of {NEW_SHAPES}, got {concept!r}")
        items = [(c, concept, d) for c in COLORS for d in DIRECTIONS]
        metrics["concept"] = {"shape": concept, **eval_compositions(pipe, items, 1, steps)}
        base = [it[:3] for it in eval_prompts("train") + eval_prompts("heldout")]
        metrics["base_prompts"] = eval_compositions(pipe, base, seeds, steps)
    print({k: v for k, v in metrics.items() if isinstance(v, dict)})
    return write_report(
        Path(out), "nanosora eval: conditioning and concepts", metrics, {}, {}, {},
        fps=pipe.cfg.fps,
    )[1]  # fmt: skip
