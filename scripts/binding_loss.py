"""What reading a binding word is worth to the training loss: a caption said right and said wrong.

    .venv/bin/python scripts/binding_loss.py PIPELINE CACHE --category spatial [--clips 96]
    .venv/bin/python scripts/binding_loss.py PIPELINE CACHE --category attributes

The velocity MSE on the cache's clips of the category, at noise levels from where the sampler
draws a layout (s = 0.995) to where it settles sizes (0.5), with each clip's composition said
plainly in several ways, the same posterior sample and noise for all of them. Spatial clips: with
their own relation, the other axis's ("above" for "left of") and the inverse ("below" for
"above"). Attributes clips of two things that differ in size and colour: with their own words,
the sizes swapped between the things, the colours swapped, and no sizes. A wording that costs
the model nothing over its own is one it does not read at that noise level.
"""

from __future__ import annotations

import argparse

import torch

from nanosora.data.cache import LatentCache
from nanosora.diffusion.flow import add_noise, velocity_target
from nanosora.pipeline import Pipeline
from nanosora.precision import bf16_autocast
from nanosora.shapes.grammar import Composition, canonical_caption, normalise, parse

LEVELS = (0.995, 0.98, 0.95, 0.9, 0.7, 0.5)
OTHER_AXIS = {"above": "left", "below": "right", "left": "above", "right": "below"}
INVERSE = {"above": "below", "below": "above", "left": "right", "right": "left"}
WORDINGS = {
    "spatial": ("own", "other axis", "inverse"),
    "attributes": ("own", "sizes swapped", "colours swapped", "no sizes"),
}


def _unsized(things) -> str:
    """Things without their sizes (no grammar template says attributed things without sizes)."""
    return " and ".join(f"a {t.color} {t.shape}" for t in things)


def scored(comp: Composition) -> bool:
    """Whether a clip's composition has the wordings of its category."""
    if comp.category == "spatial":
        return True
    a_b = comp.things
    return (
        comp.category == "attributes"
        and len(a_b) == 2
        and a_b[0].size != a_b[1].size
        and a_b[0].color != a_b[1].color
    )


def variants(text: str) -> dict[str, str]:
    """A caption said plainly in each wording of its category (see the module's doc)."""
    return wordings(parse(text)[0], text)


def _swapped(things: tuple, field: str) -> tuple:
    """Two things with ``field`` (size or color) exchanged between them."""
    a, b = things
    return a._replace(**{field: getattr(b, field)}), b._replace(**{field: getattr(a, field)})


def _said(comp: Composition) -> str:
    """The grammar's canonical caption in the parser's normal form ("a orange", as measured)."""
    return normalise(canonical_caption(comp))


def wordings(comp: Composition, text: str = "") -> dict[str, str]:
    """``comp`` in each wording of its category, the grammar's canonical caption (normalised)."""
    if not scored(comp):
        raise ValueError(f"{text!r}: not a spatial caption nor one of two attributed things")
    if comp.category == "spatial":
        word = comp.words[0]
        said = {"own": word, "other axis": OTHER_AXIS[word], "inverse": INVERSE[word]}
        return {k: _said(comp._replace(words=(w,))) for k, w in said.items()}
    things = comp.things
    return {
        "own": _said(comp),
        "sizes swapped": _said(comp._replace(things=_swapped(things, "size"))),
        "colours swapped": _said(comp._replace(things=_swapped(things, "color"))),
        "no sizes": _unsized(things),
    }


@torch.no_grad()
def binding_losses(
    pipe: Pipeline, cache: LatentCache, category: str, clips: int
) -> tuple[dict[tuple[str, float], float], int]:
    """(mean velocity MSE keyed (wording, noise level), clips scored) over the first ``clips``
    clips of ``category`` in ``cache``; samples and noise seeded by the batch, shared by wordings."""
    texts, cats = cache.manifest_column("text"), cache.manifest_column("category")
    comps = {i: parse(t)[0] for i, (t, c) in enumerate(zip(texts, cats)) if c == category}
    rows = [i for i, comp in comps.items() if scored(comp)][:clips]
    if not rows:
        raise SystemExit(f"{cache.meta['manifest']} has no {category} clips to score")
    sums: dict[tuple[str, float], float] = {}
    for lo in range(0, len(rows), 32):
        batch = rows[lo : lo + 32]
        gen = torch.Generator().manual_seed(batch[0])
        x0 = cache.batch(batch, gen)[0]
        said = [wordings(comps[i]) for i in batch]
        encoded = {k: pipe.text_encoder([v[k] for v in said]) for k in said[0]}
        for s in LEVELS:
            noise, level = torch.randn(x0.shape, generator=gen), torch.full((len(batch),), s)
            for k, (text, mask) in encoded.items():
                with bf16_autocast("cpu"):  # as the training's validation loss
                    pred = pipe.dit(add_noise(x0, noise, level), level, text, mask).float()
                err = (pred - velocity_target(x0, noise)).pow(2).flatten(1).mean(1).sum().item()
                sums[k, s] = sums.get((k, s), 0.0) + err
    return {k: v / len(rows) for k, v in sums.items()}, len(rows)


def table(losses: dict[tuple[str, float], float], category: str) -> str:
    lines = [
        "| said | " + " | ".join(f"s = {s:g}" for s in LEVELS) + " |",
        "|---|" + "---|" * len(LEVELS),
    ]
    for k in WORDINGS[category]:
        lines.append(f"| {k} | " + " | ".join(f"{losses[k, s]:.4f}" for s in LEVELS) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipeline")
    ap.add_argument("cache")
    ap.add_argument("--category", choices=sorted(WORDINGS), required=True)
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Pipeline.load(args.pipeline)
    losses, n = binding_losses(pipe, LatentCache(args.cache), args.category, args.clips)
    print(f"{n} {args.category} clips of {args.cache}\n{table(losses, args.category)}")


if __name__ == "__main__":
    main()
