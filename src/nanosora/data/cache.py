"""Latent + text cache: encode a manifest once, train the DiT many times.

Encoding a clip with the VAE costs far more than a DiT step on it, and the text encoder is frozen,
so both are computed once. Each shard ``shard-NNNNN.safetensors`` holds, for its rows:

    mean, logvar  (n, c, t, h, w) float32   raw posterior moments (the DiT samples z each step)
    text          (n, L, E) float16         text-encoder token features, zero past the mask
    mask          (n, L) uint8              1 for real text tokens
    index         (n,) int64                row in the source manifest

and, built with ``caption="random"``, every caption of every row (the manifest's ``captions``
lists), of which training draws one per clip and step:

    captions       (m, L, E) float16        text features of the rows' captions, row by row
    captions_mask  (m, L) uint8
    num_captions   (n,) int64               captions per row (they follow each other in order)

``meta.json`` records the manifest, the VAE directory and its latent statistics, the text-encoder
config, the null-prompt features for classifier-free guidance, and the shard list. Building is
resumable: complete shards are kept, a killed build continues at the first missing shard.

With ``buckets`` (a list of (T, H, W)), each clip is encoded at the shape of the bucket nearest its
aspect ratio that it fills (``nanosora.data.buckets.fit_buckets``), cropped to it, and the shards
are written per bucket (``shard-TxHxW-NNNNN``, each one shape, its ``shape`` in the shard list).
``LatentCache`` then serves batches of one shape each; the DiT trainer draws them with a
``TokenBudgetBatchSampler`` over the cached shapes. Without buckets the cache is one shape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from nanosora.atomic import atomic_path
from nanosora.config import DataConfig, TextEncoderConfig, to_dict
from nanosora.data.buckets import (
    TokenBudgetBatchSampler,
    describe_buckets,
    fit_buckets,
    tokens_of,
)
from nanosora.data.datasets import ClipWindowDataset, clip_dataset
from nanosora.data.manifest import read_manifest
from nanosora.models.text_encoder import TextEncoder, load_text_encoder, pad_features
from nanosora.models.vae import VideoVAE
from nanosora.pipeline import load_vae
from nanosora.precision import bf16_autocast


@torch.no_grad()
def _encode_text(encoder: TextEncoder, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Unique-caption encoding: the shapes world repeats captions a lot."""
    unique = sorted(set(texts))
    feats, mask = encoder(unique)
    rows = {t: feats[i, : int(mask[i].sum())] for i, t in enumerate(unique)}
    return pad_features([rows[t] for t in texts])


@torch.no_grad()
def build_cache(
    manifest: str | Path,
    vae_dir: str | Path,
    out_dir: str | Path,
    text_cfg: TextEncoderConfig = TextEncoderConfig(),
    num_frames: int = 17,
    height: int = 64,
    width: int = 64,
    fps: float = 8.0,
    shard_size: int = 1024,
    batch_size: int = 16,
    buckets: Sequence[tuple[int, int, int]] = (),
    crop: Literal["none", "center"] = "none",
    unfit: Literal["error", "drop"] = "error",
    caption: Literal["text", "random"] = "text",
    latents_from: str | Path | None = None,
) -> Path:
    """Encode every row of ``manifest`` into shards under ``out_dir``; returns ``out_dir``.

    ``(num_frames, height, width)`` is the clips' shape, or with ``buckets`` the default shape
    generation uses; ``crop="center"`` crops frames to the target aspect before resizing;
    ``unfit``: a clip no bucket holds stops the build, or is skipped and counted;
    ``caption="random"`` keeps all of a row's ``captions`` for the DiT to draw from.
    ``latents_from``: a cache of the same manifest, VAE and shapes whose latents are copied, so
    only the text is encoded (another text encoder or ``text_cfg``, without re-encoding video).
    """
    d = DataConfig(str(manifest), num_frames, height, width, fps, in_memory=False, crop=crop,
                   caption=caption, buckets=tuple(tuple(b) for b in buckets), unfit=unfit)  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_vae(vae_dir)
    encoder = load_text_encoder(text_cfg)
    clips = clip_dataset(manifest, d)
    if caption == "random" and clips.captions is None:
        raise ValueError(f"caption=random needs a `captions` column (lists) in {manifest}")
    plan, dropped = _shard_plan(clips, d, shard_size)
    if latents_from and Path(latents_from).resolve() == out.resolve():
        raise ValueError(f"--latents-from {latents_from} is the cache being written; write to another directory")  # fmt: skip
    reuse = _latent_source(latents_from, d, vae_dir, plan) if latents_from else None
    shards = []
    bar = tqdm(total=sum(len(rows) for _, rows, _ in plan), desc="caching latents", unit="clip")
    for name, rows, shape in plan:
        shards.append({"file": name, "rows": len(rows)} | ({"shape": shape} if buckets else {}))
        if (out / name).is_file():
            bar.update(len(rows))
            continue
        if reuse is None:
            tensors = _encode_shard(clips, rows, vae, encoder, batch_size, bar)
        else:
            tensors = _reuse_shard(reuse / name, rows, clips, encoder)
            bar.update(len(rows))
        if caption == "random":  # every caption of every row, row after row
            options = [clips.captions[i] or [clips.texts[i]] for i in rows]
            text, mask = _encode_text(encoder, [c for o in options for c in o])
            tensors |= {
                "captions": text.half().contiguous(),
                "captions_mask": mask.to(torch.uint8).contiguous(),
                "num_captions": torch.tensor([len(o) for o in options], dtype=torch.int64),
            }
        with atomic_path(out / name) as tmp:
            save_file(tensors, str(tmp))
    bar.close()
    null_text, null_mask = encoder([""])
    meta = {
        "manifest": str(Path(manifest).resolve()),
        "vae": str(Path(vae_dir).resolve()),
        "latent_mean": vae.latent_mean.tolist(),
        "latent_std": vae.latent_std.tolist(),
        "text": to_dict(text_cfg),
        "null_text": null_text[0, : int(null_mask[0].sum())].tolist(),
        "num_frames": num_frames,
        "height": height,
        "width": width,
        "fps": fps,
        "rows": len(clips) - dropped,
        "shards": shards,
    }
    if buckets:
        meta |= {"buckets": [list(b) for b in d.buckets], "dropped": dropped}
    (out / "meta.json").write_text(json.dumps(meta))
    return out


def _encode_shard(
    clips: ClipWindowDataset,
    rows: list[int],
    vae: VideoVAE,
    encoder: TextEncoder,
    batch_size: int,
    bar: tqdm,
) -> dict[str, torch.Tensor]:
    """Posterior moments, ``text`` features, mask and manifest index of ``rows`` (one shape)."""
    means, logvars = [], []
    for b in range(0, len(rows), batch_size):
        x = torch.stack([clips[i]["video"] for i in rows[b : b + batch_size]])
        # bf16 encoding is much faster on a CPU with bf16 units; the DiT adds noise far above
        # bf16's precision.
        with bf16_autocast("cpu"):
            mean, logvar = vae.encode_moments(x)
        means.append(mean.float())
        logvars.append(logvar.float())
        bar.update(len(x))
    latents = {"mean": torch.cat(means).contiguous(), "logvar": torch.cat(logvars).contiguous()}
    return latents | _text_tensors(encoder, clips, rows) | {"index": torch.tensor(rows, dtype=torch.int64)}  # fmt: skip


def _text_tensors(encoder: TextEncoder, clips: ClipWindowDataset, rows: list[int]) -> dict[str, torch.Tensor]:  # fmt: skip
    """The ``text`` features (float16) and ``mask`` (uint8) of ``rows``' captions, as stored."""
    text, mask = _encode_text(encoder, [clips.texts[i] for i in rows])
    return {"text": text.half().contiguous(), "mask": mask.to(torch.uint8).contiguous()}


def _latent_source(source: str | Path, d: DataConfig, vae_dir: str | Path, plan: list) -> Path:
    """Check that cache ``source`` holds the latents this build would compute, shard by shard."""
    src = Path(source)
    meta_path = src / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"--latents-from {src}: not a latent cache (meta.json missing)")
    meta = json.loads(meta_path.read_text())
    for key, want in (("manifest", d.manifest), ("vae", vae_dir)):
        if Path(meta[key]) != Path(want).resolve():
            raise ValueError(f"--latents-from {src} was built from {key} {meta[key]}, not {Path(want).resolve()}")  # fmt: skip
    shape = [meta["num_frames"], meta["height"], meta["width"], meta["fps"]]
    if shape != [d.num_frames, d.height, d.width, d.fps]:
        raise ValueError(f"--latents-from {src} holds clips of (frames, height, width, fps) {shape}, not {[d.num_frames, d.height, d.width, d.fps]}")  # fmt: skip
    theirs = [(s["file"], s["rows"]) for s in meta["shards"]]
    if theirs != [(name, len(rows)) for name, rows, _ in plan]:
        raise ValueError(f"--latents-from {src} has other shards than this build (another shard size or buckets?)")  # fmt: skip
    return src


def _reuse_shard(
    path: Path, rows: list[int], clips: ClipWindowDataset, encoder: TextEncoder
) -> dict[str, torch.Tensor]:
    """Latents and index of ``rows`` copied from another cache's shard; the text encoded anew."""
    part = load_file(str(path))
    if part["index"].tolist() != list(rows):
        raise ValueError(f"{path} holds other manifest rows than this build's shard")
    latents = {k: part[k] for k in ("mean", "logvar")}
    return latents | _text_tensors(encoder, clips, rows) | {"index": part["index"]}


def _shard_plan(
    clips: ClipWindowDataset, d: DataConfig, shard_size: int
) -> tuple[list[tuple[str, list[int], list[int]]], int]:
    """(file name, manifest rows, (T, H, W)) of every shard, and the count of clips that fit no
    bucket (skipped; ``d.unfit="error"`` raises instead). One shape per shard."""
    n = len(clips)
    if not d.buckets:
        shape = [d.num_frames, d.height, d.width]
        los = range(0, n, shard_size)
        return [(f"shard-{k:05d}.safetensors", list(range(lo, min(n, lo + shard_size))), shape)
                for k, lo in enumerate(los)], 0  # fmt: skip
    bucket_of = fit_buckets(clips.clip_sizes(), d.buckets, d.unfit)
    print(f"cache buckets of {d.manifest}:\n{describe_buckets(bucket_of, d.buckets)}")
    clips.set_shapes([d.buckets[b] if b >= 0 else d.buckets[0] for b in bucket_of])
    plan = []
    for b, shape in enumerate(d.buckets):
        rows = np.flatnonzero(bucket_of == b).tolist()
        for k, lo in enumerate(range(0, len(rows), shard_size)):
            name = f"shard-{'x'.join(map(str, shape))}-{k:05d}.safetensors"
            plan.append((name, rows[lo : lo + shard_size], list(shape)))
    return plan, int((bucket_of < 0).sum())


class LatentCache:
    """All shards of a cache in memory, ready to be sampled by batch index.

    Clips are numbered shape by shape (one group per cached (T, H, W), in shard-list order);
    ``shapes[group_of[i]]`` is clip i's pixel shape and ``means[g][row_of[i]]`` its posterior
    mean. A one-shape cache is a single group numbered as its shards.
    """

    def __init__(self, cache_dir: str | Path):
        d = Path(cache_dir)
        meta_path = d / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"{d} is not a latent cache (meta.json missing); build it first"
            )
        self.meta = json.loads(meta_path.read_text())
        m = self.meta
        paths, heads = [], []  # each shard's file and {key: shape} (headers only)
        for shard in m["shards"]:
            p = d / shard["file"]
            if not p.is_file():
                raise FileNotFoundError(
                    f"cache shard {p} is missing; rebuild the cache to resume it"
                )
            with safe_open(str(p), framework="pt") as f:
                heads.append({k: f.get_slice(k).get_shape() for k in f.keys()})
            paths.append(p)
        max_len = max(h[k][1] for h in heads for k in ("text", "captions") if k in h)
        groups: dict[tuple[int, int, int], list[int]] = {}  # pixel shape -> its shards
        for j, shard in enumerate(m["shards"]):
            shape = shard.get("shape", (m["num_frames"], m["height"], m["width"]))
            groups.setdefault(tuple(shape), []).append(j)
        self.shapes = list(groups)
        order = [j for js in groups.values() for j in js]

        # Tensors for the whole cache, filled one memory-mapped shard at a time, so loading
        # allocates no more than the cache itself. Clips are numbered in ``order``.
        def total(key: str, js: list[int]) -> int:
            return sum(heads[j][key][0] for j in js)

        def latents(js: list[int]) -> torch.Tensor:
            return torch.empty(total("mean", js), *heads[js[0]]["mean"][1:])

        def features(key: str) -> torch.Tensor:  # (n, max_len, E), zero past each row's text
            return torch.zeros(total(key, order), max_len, heads[0][key][2], dtype=torch.float16)

        self.means = [latents(js) for js in groups.values()]
        self.stds = [latents(js) for js in groups.values()]
        self.text = features("text")  # float16 until batched
        self.mask = torch.zeros(len(self.text), max_len, dtype=torch.bool)
        self.captions = self.captions_mask = None  # caption="random": drawn per clip and step
        if all("captions" in h for h in heads):
            self.captions = features("captions")
            self.captions_mask = torch.zeros(len(self.captions), max_len, dtype=torch.bool)

        def put(dst: torch.Tensor, start: int, src: torch.Tensor) -> None:
            dst[start : start + len(src), : src.shape[1]] = src  # zero past a shorter text

        index, num_captions = [], []
        clip = caption_row = 0
        for g, js in enumerate(groups.values()):
            row = 0
            for j in js:
                part = load_file(str(paths[j]))
                n = len(part["mean"])
                self.means[g][row : row + n] = part["mean"]
                std = self.stds[g][row : row + n]  # exp(logvar / 2), written in place
                torch.mul(part["logvar"], 0.5, out=std).exp_()
                put(self.text, clip, part["text"])
                put(self.mask, clip, part["mask"])
                index.append(part["index"])
                if self.captions is not None:
                    put(self.captions, caption_row, part["captions"])
                    put(self.captions_mask, caption_row, part["captions_mask"])
                    num_captions.append(part["num_captions"])
                    caption_row += len(part["captions"])
                row += n
                clip += n
        self.group_of = torch.cat([torch.full((len(g),), i) for i, g in enumerate(self.means)])
        self.row_of = torch.cat([torch.arange(len(g)) for g in self.means])
        self.index = torch.cat(index)
        if self.captions is not None:
            self.num_captions = torch.cat(num_captions)
            self.first_caption = torch.cumsum(self.num_captions, 0) - self.num_captions
        self.latent_mean = torch.tensor(self.meta["latent_mean"]).view(1, -1, 1, 1, 1)
        self.latent_std = torch.tensor(self.meta["latent_std"]).view(1, -1, 1, 1, 1)
        null = torch.tensor(self.meta["null_text"])
        self.null_text = torch.zeros(max_len, null.shape[-1])
        self.null_text[: len(null)] = null
        self.null_mask = torch.zeros(max_len, dtype=torch.bool)
        self.null_mask[: len(null)] = True

    def __len__(self) -> int:
        return len(self.group_of)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """(c, t, h, w) of a clip of the cache's default (num_frames, height, width) shape (the
        first cached shape when none has it): what samples and the pipeline are made at."""
        m = self.meta
        default = (m["num_frames"], m["height"], m["width"])
        g = self.shapes.index(default) if default in self.shapes else 0
        return tuple(self.means[g].shape[1:])

    def manifest_column(self, name: str) -> list:
        """Column ``name`` of the manifest the cache was built from, one value per cached clip
        (in clip order)."""
        path = self.meta["manifest"]
        df = read_manifest(path)
        if name not in df.columns:
            raise ValueError(f"{path} (the manifest of this cache) has no {name!r} column")
        values = df[name].tolist()
        if int(self.index.max()) >= len(values):
            raise ValueError(f"{path} has {len(values)} rows, fewer than the cache's clips index")
        return [values[i] for i in self.index.tolist()]

    def sizes(self) -> np.ndarray:
        """(T, H, W) pixel shape of every cached clip (for ``TokenBudgetBatchSampler``)."""
        return np.asarray(self.shapes, dtype=np.int64)[self.group_of.numpy()]

    def bucket_sampler(
        self, batch_size: int, token_budget: int = 0, multiple_of: int = 1, seed: int = 0
    ) -> TokenBudgetBatchSampler | None:
        """One-shape batches over a multi-shape cache, ``token_budget`` tokens at most each
        (0: ``batch_size`` clips of the default shape); None for a one-shape cache."""
        if len(self.shapes) == 1:
            return None
        m = self.meta
        budget = token_budget or batch_size * tokens_of((m["num_frames"], m["height"], m["width"]))
        return TokenBudgetBatchSampler(self.sizes(), self.shapes, budget, multiple_of, seed=seed)

    def batch(
        self,
        indices: list[int],
        generator: torch.Generator,
        text_dropout: float = 0.0,
        with_dropped: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Normalised latent samples (B, c, t, h, w), text (B, L, E), mask (B, L) and, with
        ``with_dropped``, which rows got the null prompt (B,) bool.

        z is drawn from the posterior each time (mean + std * eps), then normalised with the
        VAE's statistics. With probability ``text_dropout`` a row's text is replaced by the null
        prompt's features: that is what classifier-free guidance contrasts against.
        """
        idx = torch.as_tensor(indices)
        group = self.group_of[idx].unique()
        if len(group) != 1:
            raise ValueError(
                f"a batch must hold one latent shape; clips {indices} have shapes "
                f"{[self.shapes[int(g)] for g in group]} (draw batches with a bucket sampler)"
            )
        mean, std = (
            self.means[int(group)][self.row_of[idx]],
            self.stds[int(group)][self.row_of[idx]],
        )
        eps = torch.randn(mean.shape, generator=generator)
        z = (mean + std * eps - self.latent_mean) / self.latent_std
        text, mask = self.text[idx].float(), self.mask[idx].clone()
        if self.captions is not None:  # one of each clip's captions
            u = torch.rand(len(idx), generator=generator)
            pick = self.first_caption[idx] + (u * self.num_captions[idx]).long()
            text, mask = self.captions[pick].float(), self.captions_mask[pick]
        drop = torch.zeros(len(idx), dtype=torch.bool)
        if text_dropout > 0:
            drop = torch.rand(len(idx), generator=generator) < text_dropout
            text[drop], mask[drop] = self.null_text, self.null_mask
        return (z, text, mask, drop) if with_dropped else (z, text, mask)
