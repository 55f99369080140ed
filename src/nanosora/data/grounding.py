"""Word grounding targets: where on screen each colour and shape word of a scenes caption is.

The scenes world's ground truth (``truth.jsonl`` beside its manifest) places every object in
every frame, so each colour or shape word of a caption has an exact region: the visible pixels of
the objects with that colour (in that frame) or that shape. A word's region, reduced to the DiT's
token grid, is the target of the grounding loss (``flow.ground_weight``, train/dit.py): a word's
cross-attention mass should fall on its objects' tokens (TokenCompose, Wang et al. 2024, with
segmentation masks; here the masks are exact and free).

``build_grounding`` writes ``grounding.npy`` into a latent cache: (manifest rows, L, t, gh, gw)
uint8, the share (x 255) of each token cell's pixels that the word's objects cover in each latent
frame, for the cache's text length L, latent frames t and a spatial patch of ``patch_hw`` latent
cells (gh = latent height / patch_hw); ``grounding.json`` records the patch and the words.
Tokens that are not colour or shape words (and words whose objects are never visible) are zero:
no target.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from nanosora.atomic import atomic_path, write_text_atomic
from nanosora.config import TextEncoderConfig, from_dict
from nanosora.models.text_encoder import load_text_encoder
from nanosora.shapes.grammar import SLOTS
from nanosora.shapes.scenes import ObjectTruth, object_masks
from nanosora.shapes.world import COLORS, SIZE

GROUNDING_FILE = "grounding.npy"
MIN_COVER = 8 / 256  # share of a token cell's pixels above which a word's objects are "there"
SHAPE_OF: dict[str, str] = {w: str(s) for w, s in SLOTS["sp"].items()}  # singular and plural


def word_kind(word: str) -> tuple[str, str] | None:
    """("color", name) or ("shape", shape) for a caption word the targets ground, else None."""
    w = word.lower()
    if w in COLORS:
        return "color", w
    if w in SHAPE_OF:
        return "shape", SHAPE_OF[w]
    return None


def object_pixels(objects: list[dict], frames: int) -> np.ndarray:
    """(objects, T, SIZE, SIZE) bool: each object's visible pixels (drawn back to front, as
    `scenes.render` draws them) from ``truth.jsonl`` records."""
    owner = np.full((frames, SIZE, SIZE), -1, np.int16)
    for i in sorted(range(len(objects)), key=lambda i: objects[i]["depth"]):
        o = objects[i]
        truth = ObjectTruth(
            o["shape"], tuple(o["color"]), *(np.asarray(o[k], np.float64) for k in ("x", "y", "side", "angle")), o["depth"]
        )  # fmt: skip
        k, r, c = object_masks(truth)
        owner[k, r, c] = i
    return owner[None] == np.arange(len(objects))[:, None, None, None]


def latent_frame_groups(frames: int, latent_frames: int) -> list[range]:
    """Pixel frames of each latent frame of a causal VAE: the first alone, then r per latent
    (r = (frames - 1) / (latent_frames - 1))."""
    if latent_frames == 1:
        return [range(1)]
    r, rest = divmod(frames - 1, latent_frames - 1)
    if rest:
        raise ValueError(f"{frames} frames do not map onto {latent_frames} causal latent frames")
    return [range(1)] + [range(1 + (k - 1) * r, 1 + k * r) for k in range(1, latent_frames)]


def caption_targets(
    truth: dict,
    token_words: list[str | None],
    latent_frames: int,
    grid: tuple[int, int],
) -> np.ndarray:
    """(L, t, gh, gw) uint8 targets of one clip: for each token, its word's objects' share of
    each token cell per latent frame (x 255), zero for tokens that are not grounded words."""
    objects = truth["objects"]
    frames = len(objects[0]["x"]) if objects else 1
    gh, gw = grid
    out = np.zeros((len(token_words), latent_frames, gh, gw), np.uint8)
    if not objects:
        return out
    pixels = object_pixels(objects, frames)  # (O, T, S, S)
    groups = latent_frame_groups(frames, latent_frames)
    regions: dict[tuple[str, str], np.ndarray] = {}
    for li, word in enumerate(token_words):
        kind = word_kind(word) if word else None
        if kind is None:
            continue
        if kind not in regions:
            if kind[0] == "shape":
                mine = np.array([o["shape"] == kind[1] for o in objects])[:, None]
            else:  # colour per frame: an object that changes colour is each colour in turn
                mine = np.array([[c == kind[1] for c in o["color"]] for o in objects])
            region = (pixels & mine[:, :, None, None]).any(0)  # (T, S, S)
            cover = region.reshape(frames, gh, SIZE // gh, gw, SIZE // gw).mean(axis=(2, 4))
            per_latent = np.stack([cover[list(g)].max(0) for g in groups])
            regions[kind] = np.round(per_latent * 255).astype(np.uint8)
        out[li] = regions[kind]
    return out


def token_words(tokenizer, text: str, max_length: int) -> list[str | None]:
    """The caption word of each token of ``text`` as the text encoder tokenizes it (special
    tokens: None), padded with None to ``max_length``."""
    enc = tokenizer(text, truncation=True, max_length=max_length)
    words: list[str | None] = []
    for wid in enc.word_ids():
        span = enc.word_to_chars(wid) if wid is not None else None
        words.append(text[span.start : span.end] if span else None)
    return words + [None] * (max_length - len(words))


def build_grounding(
    cache_dir: str | Path,
    patch_hw: int,
    truth: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Write ``grounding.npy`` (and ``grounding.json``) into a one-shape latent cache of a scenes
    dataset; ``truth`` defaults to ``truth.jsonl`` beside the cache's manifest. Returns the file."""
    cache_dir = Path(cache_dir)
    meta = json.loads((cache_dir / "meta.json").read_text())
    truth = Path(truth) if truth else Path(meta["manifest"]).parent / "truth.jsonl"
    if not truth.is_file():
        raise FileNotFoundError(
            f"{truth}: no ground truth for the cache's manifest (grounding targets need a scenes "
            "dataset's truth.jsonl; pass --truth)"
        )
    shapes = {tuple(s.get("shape", ())) for s in meta["shards"]}
    if len(shapes) > 1:
        raise ValueError(f"{cache_dir}: grounding targets need a one-shape cache, it has {shapes}")
    with safe_open(str(cache_dir / meta["shards"][0]["file"]), "pt") as f:
        _, _, t, h, w = f.get_slice("mean").get_shape()
        max_length = f.get_slice("text").get_shape()[1]
    if h % patch_hw or w % patch_hw:
        raise ValueError(f"latent {h}x{w} does not divide into patches of {patch_hw}")
    grid = (h // patch_hw, w // patch_hw)
    if SIZE % grid[0] or SIZE % grid[1]:
        raise ValueError(f"a {SIZE}px frame does not divide into a {grid} token grid")
    text_cfg = from_dict(TextEncoderConfig, meta.get("text", {}), "cache text")
    max_length = max(max_length, text_cfg.max_length)
    tokenizer = load_text_encoder(text_cfg).tokenizer
    lines = truth.read_text().splitlines()
    if len(lines) < meta["rows"]:
        raise ValueError(f"{truth} has {len(lines)} clips; the cache has {meta['rows']} rows")
    out = cache_dir / GROUNDING_FILE
    with atomic_path(out) as tmp:
        arr = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(lines), max_length, t, *grid)
        )
        for i, line in enumerate(tqdm(lines, desc="grounding", unit="clip", disable=not progress)):
            try:
                record = json.loads(line)
                frames = len(record["objects"][0]["x"]) if record["objects"] else meta["num_frames"]
                if frames != meta["num_frames"]:  # the cache must hold whole clips from frame 0
                    raise ValueError(f"a {frames}-frame clip; the cache encodes {meta['num_frames']} frames")  # fmt: skip
                words = token_words(tokenizer, record["caption"], max_length)
                arr[i] = caption_targets(record, words, t, grid)
            except (KeyError, ValueError, IndexError) as e:
                raise ValueError(f"{truth} line {i + 1}: {e}") from e
        arr.flush()
        del arr
    write_text_atomic(
        cache_dir / "grounding.json",
        json.dumps({"patch_hw": patch_hw, "truth": str(truth), "min_cover": MIN_COVER}, indent=1),
    )
    return out


class GroundingTargets:
    """A cache's ``grounding.npy``, memory-mapped: targets by manifest row."""

    def __init__(self, cache_dir: str | Path, patch_hw: int):
        cache_dir = Path(cache_dir)
        path = cache_dir / GROUNDING_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: flow.ground_weight needs grounding targets; build them with "
                f"`nanosora ground {cache_dir} --patch {patch_hw}`"
            )
        info = json.loads((cache_dir / "grounding.json").read_text())
        if info["patch_hw"] != patch_hw:
            raise ValueError(
                f"{path} was built for patches of {info['patch_hw']} latent cells; the DiT's "
                f"dit.patch_hw is {patch_hw}: rebuild with --patch {patch_hw}"
            )
        self.maps = np.load(path, mmap_mode="r")

    def batch(self, rows: torch.Tensor, length: int) -> torch.Tensor:
        """(B, L, t, gh, gw) float coverage in [0, 1] of manifest ``rows``, text cut to ``length``."""
        idx = np.asarray(rows, dtype=np.int64)
        order = np.argsort(idx)  # memmap reads in ascending order
        got = np.empty((len(idx), *self.maps.shape[1:]), np.uint8)
        got[order] = self.maps[idx[order]]
        return torch.from_numpy(got[:, :length]).float() / 255


def token_targets(maps: torch.Tensor, patch_t: int) -> torch.Tensor:
    """(B, L, t, gh, gw) coverage -> (B, N, L) bool targets on the DiT's token grid: latent
    frames front-padded to whole temporal patches (as ``VideoDiT.forward`` pads), a token is a
    word's where its objects cover at least ``MIN_COVER`` of a cell in any of its frames."""
    t = maps.shape[2]
    pad = -t % patch_t
    if pad:
        maps = torch.cat([maps.new_zeros(*maps.shape[:2], pad, *maps.shape[3:]), maps], dim=2)
    b, length, tp, gh, gw = maps.shape
    per_token = maps.view(b, length, tp // patch_t, patch_t, gh, gw).amax(3)
    return (per_token.flatten(2) >= MIN_COVER).transpose(1, 2)


def grounding_loss(
    probs: torch.Tensor, targets: torch.Tensor, keep: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """TokenCompose's token loss: (B, N, L) cross-attention probabilities (each token's softmax
    over the words), (B, N, L) bool targets -> per word (1 - the share of the word's attention
    mass on its objects' tokens)^2, summed over each row's grounded words, and their count (both
    (B,)); rows not in ``keep`` (B,) bool (say, text dropped for guidance) count none."""
    t = targets.to(probs.dtype)
    grounded = targets.any(1)  # (B, L)
    if keep is not None:
        grounded = grounded & keep[:, None]
    mass = probs.sum(1).clamp_min(1e-8)
    inside = (probs * t).sum(1) / mass  # (B, L)
    per_word = (1 - inside).pow(2) * grounded
    return per_word.sum(1), grounded.sum(1)
