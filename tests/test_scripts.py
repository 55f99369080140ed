"""The analysis scripts: scenes_compute_plot.py's tables of failure kinds and misdrawn shapes, read
from snapshot reports, text_similarity.py's cosines, direction_probe.py's and relation_probe.py's
readings, binding_loss.py's wordings, grounding_score.py's attention shares, commit_steps.py's
settling steps."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nanosora.data.grounding import token_targets


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / f"scripts/{name}.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


plot = _script("scenes_compute_plot")


def _report(
    run: Path, step: int, failures: dict[str, int] | None, clips: int = 4, bench: str = "bench"
) -> None:
    d = run / f"snapshots/step_{step:06d}/{bench}"
    d.mkdir(parents=True)
    data = {"summary": {}, "clips": [{}] * clips}
    if failures is not None:
        data["failures"] = {"all": failures}
    (d / "report.json").write_text(json.dumps(data))


def test_kinds_table_counts_failures_per_snapshot_in_kind_order(tmp_path: Path) -> None:
    run = tmp_path / "big"
    _report(run, 4000, {"reversed": 1})
    _report(run, 2000, {"wrong shape": 2, "reversed": 1})
    lines = plot.kinds_table([run]).splitlines()
    # Only kinds that occur, in FAILURE_KINDS order; snapshots in step order.
    assert lines[0] == "| snapshot | failed | wrong shape | reversed |"
    assert lines[2] == "| big step_002000 | 3 of 4 | 2 | 1 |"
    assert lines[3] == "| big step_004000 | 1 of 4 | 0 | 1 |"


def test_each_snapshot_reads_the_first_report_folder_it_has(tmp_path: Path) -> None:
    run = tmp_path / "run"
    _report(run, 1000, {"reversed": 1})
    _report(run, 1000, {"missing": 3}, bench="bench_cfg3")
    _report(run, 2000, {"count": 2})
    _report(run, 3000, {"count": 1}, bench="other")
    found = plot.reports(run, ("bench_cfg3", "bench"))
    assert [p.parent.name for p in found] == ["bench_cfg3", "bench"]  # step 3000 has neither
    lines = plot.kinds_table([run], ("bench_cfg3", "bench")).splitlines()
    assert lines[2:] == [
        "| run step_001000 | 3 of 4 | 3 | 0 |",
        "| run step_002000 | 2 of 4 | 0 | 2 |",
    ]


def test_kinds_table_asks_for_a_regrade_of_an_old_report(tmp_path: Path) -> None:
    _report(tmp_path / "old", 2000, None)
    with pytest.raises(SystemExit, match="no failure kinds: run its bench-scenes again"):
        plot.kinds_table([tmp_path / "old"])


def test_misdrawn_shapes_tell_the_other_named_shape_from_the_third() -> None:
    def clip(prompt: str, seen: str, kind: str = "wrong shape") -> dict:
        return {"prompt": prompt, "seen": seen, "kind": kind}

    clips = [
        clip("a red circle above a blue square", "red square, blue square"),  # the other's
        clip("a red circle above a blue square", "red triangle, blue square"),  # the third
        clip("a red circle above a blue triangle", "red triangle, blue circle"),  # both swap
        clip("one green circle", "green square"),  # one named shape: not counted
        clip("a red circle above a blue square", "blue square, red square", kind="reversed"),
        clip("a red circle above a blue square", "red circle, blue square", kind=""),
    ]
    wrong, objects = plot.misdrawn_shapes(clips)
    assert wrong == 4
    assert objects == {
        ("circle", "square", True): 1,
        ("circle", "triangle", False): 1,
        ("circle", "triangle", True): 1,
        ("triangle", "circle", True): 1,
    }


def test_text_similarity_of_prompts_one_word_apart() -> None:
    from nanosora.config import TextEncoderConfig
    from nanosora.models.text_encoder import load_text_encoder

    sim = _script("text_similarity")
    encoder = load_text_encoder(TextEncoderConfig())
    tokens, pooled = sim.similarity(
        encoder, "a red circle moving left", "a red circle moving right"
    )
    colour, _ = sim.similarity(encoder, "a red circle moving left", "a blue circle moving left")
    assert 0.0 < colour < tokens < pooled < 1.0  # antonyms sit closer than colours
    with pytest.raises(SystemExit, match="are the same tokens"):
        sim.similarity(encoder, "a red circle", "a red circle")
    with pytest.raises(SystemExit, match="tokenize to different lengths"):
        sim.similarity(encoder, "a green circle grows", "a green circle shrinks")
    # A word's own features: the same word in the same sentence is 1; the relation word barely
    # reaches the noun, less than the noun's place in the sentence does.
    above = "a blue circle above a cyan square"
    assert sim.word_similarity(encoder, above, above, "circle") == pytest.approx(1.0, abs=1e-5)
    relation = sim.word_similarity(encoder, above, "a blue circle below a cyan square", "circle")
    order = sim.word_similarity(encoder, above, "a cyan square above a blue circle", "circle")
    assert order < relation < 1.0
    with pytest.raises(SystemExit, match="'star' is not a word of"):
        sim.word_similarity(encoder, above, above, "star")


def test_direction_probe_passes_the_worlds_renders_and_rejects_them_reversed() -> None:
    probe = _script("direction_probe")
    truth = probe.render(["a red circle"], seeds=2, reverse=False)
    result = probe.probe(truth)
    assert result["right"] == 1.0 and result["sign_wrong"] == 0.0
    # A clip moving left starts on the right of the 64-pixel frame, one moving up at the bottom.
    assert result["start"]["left"] > 40 > 24 > result["start"]["right"]
    assert result["start"]["up"] > 40 > 24 > result["start"]["down"]
    backwards = probe.probe(probe.render(["a red circle"], seeds=2, reverse=True))
    assert backwards["right"] == 0.0 and backwards["sign_wrong"] == 1.0
    assert backwards["confusion"]["left", "right"] == 2
    # A clip frozen on its first frame reads as still: off the asked axis, not a wrong sign.
    still = {k: np.repeat(v[:1], len(v), axis=0) for k, v in truth.items()}
    frozen = probe.probe(still)
    assert frozen["right"] == 0.0 and frozen["confusion"]["up", "still"] == 2
    assert "| left | 2 | 0 | 0 | 0 | 0 |" in probe.table(result)


def test_relation_probe_passes_the_worlds_renders_and_rejects_them_swapped() -> None:
    probe = _script("relation_probe")
    pairs = [probe.PAIRS[0]]
    result = probe.probe(probe.render(pairs, seeds=2, swap=False), pairs)
    assert result["right"] == result["axis"] == 1.0 and result["confusion"]["above", "above"] == 2
    assert result["word_effect"] > 0.6  # the world's layout follows the word as much as the seed
    swapped = probe.probe(probe.render(pairs, seeds=2, swap=True), pairs)
    assert swapped["right"] == 0.0 and swapped["axis"] == 1.0
    assert swapped["confusion"]["above", "below"] == swapped["confusion"]["left", "right"] == 2
    # One seed's layout for every word: the word moves nothing, and three of four read wrong.
    one = probe.render(pairs, seeds=2, swap=False)
    fixed = {(i, r, s): one[i, "left", s] for i, r, s in one}
    frozen = probe.probe(fixed, pairs)
    assert frozen["word_effect"] == 0.0 and frozen["right"] == 0.25 and frozen["axis"] == 0.5
    blank = {k: np.zeros_like(v) for k, v in one.items()}
    assert probe.probe(blank, pairs)["confusion"]["above", "missing"] == 2
    assert "| left | 0 | 0 | 2 | 0 |" in probe.table(result)


def test_binding_loss_says_each_caption_in_its_categorys_wordings() -> None:
    loss = _script("binding_loss")
    assert loss.variants("On a black background, a purple ball over a cyan circle.") == {
        "own": "a purple circle above a cyan circle",
        "other axis": "a purple circle to the left of a cyan circle",
        "inverse": "a purple circle below a cyan circle",
    }
    assert loss.variants("a clip of a tiny white box and a large cyan circle") == {
        "own": "a small white square and a big cyan circle",
        "sizes swapped": "a big white square and a small cyan circle",
        "colours swapped": "a small cyan square and a big white circle",
        "no sizes": "a white square and a cyan circle",
    }
    for text in ("a red circle moving left", "a big red square and a big blue circle"):
        with pytest.raises(ValueError, match="not a spatial caption nor"):
            loss.variants(text)


class _CaptionedCache:
    """Four clips' latents for the shipped model; two are of the scored kind."""

    meta = {"manifest": "m.parquet"}
    texts = ["a red circle above a blue square", "a red circle moving left", "A green block is right of a red triangle.", "a big red square and a small red circle"]  # fmt: skip
    cats = ["spatial", "single", "spatial", "attributes"]

    def __init__(self, shape: tuple[int, ...]):
        self.shape = shape
        self.rows: list[list[int]] = []

    def manifest_column(self, name: str) -> list[str]:
        return self.texts if name == "text" else self.cats

    def batch(self, rows, generator):
        self.rows.append(list(rows))
        return (torch.randn((len(rows), *self.shape), generator=generator),)


def test_binding_losses_score_one_categorys_clips_alike_for_every_wording() -> None:
    from nanosora.pipeline import Pipeline

    loss = _script("binding_loss")
    pipe = Pipeline.load()
    cache = _CaptionedCache(tuple(pipe.vae.latent_shape(17, 64, 64)))
    losses, n = loss.binding_losses(pipe, cache, "spatial", clips=8)
    assert n == 2 and cache.rows == [[0, 2]]  # the spatial clips only
    assert sorted(losses) == sorted((k, s) for k in loss.WORDINGS["spatial"] for s in loss.LEVELS)
    assert all(np.isfinite(v) and v > 0 for v in losses.values())
    # The same seeded latents and noise for every wording: the text alone moves the loss.
    assert losses == loss.binding_losses(pipe, _CaptionedCache(cache.shape), "spatial", 8)[0]
    assert losses["own", 0.7] != losses["other axis", 0.7]
    assert "| inverse |" in loss.table(losses, "spatial")
    with pytest.raises(SystemExit, match="no attributes clips to score"):
        loss.binding_losses(pipe, cache, "attributes", clips=8)  # same colours: not scored


def test_direction_probe_reads_the_shipped_models_clips() -> None:
    from nanosora.pipeline import SHIPPED_MODEL

    probe = _script("direction_probe")
    clips = probe.generate(str(SHIPPED_MODEL), ["a red circle"], seeds=1, cfg=None)
    assert sorted(clips) == [("a red circle", d, 0) for d in sorted(probe.DIRECTIONS)]
    assert probe.probe(clips)["right"] == 1.0  # its directions read right in every eval


class _Cache:
    """Two clips' worth of a latent cache: 1 latent frame of 2 x 2 cells, 3 text tokens."""

    index = torch.tensor([0, 1])

    def __len__(self) -> int:
        return 2

    def batch(self, rows, generator):
        return torch.zeros(len(rows), 4, 1, 2, 2), torch.zeros(len(rows), 3, 8), torch.ones(len(rows), 3, dtype=torch.bool)  # fmt: skip


class _Targets:
    maps = torch.zeros(2, 3, 1, 2, 2)
    maps[0, 1, 0, 0, 0] = maps[1, 2, 0, 1, 1] = 1.0  # one word on one of 4 tokens per clip

    def batch(self, rows, length):
        return self.maps[rows][:, :length]


class _Attender(torch.nn.Module):
    """A stand-in DiT whose two blocks attend as told: each word only from its objects' tokens,
    or uniformly."""

    def __init__(self, on_target: bool):
        super().__init__()
        self.cfg = type("Cfg", (), {"patch_t": 1})()
        self.on_target = on_target

    def forward(self, z, level, text, mask, cross_probs):
        g = token_targets(_Targets.maps[: len(z)], 1).float()  # (B, N, L)
        if self.on_target:  # tokens of no word attend to the first, ungrounded token ([CLS])
            p = g.clone()
            p[..., 0] += p.sum(-1) == 0
        else:
            p = torch.ones_like(g)
        cross_probs += [p / p.sum(-1, keepdim=True)] * 2
        return z


def test_grounding_score_reads_one_for_attention_on_target_and_chance_for_uniform() -> None:
    score = _script("grounding_score")
    on = score.shares(_Attender(True), _Cache(), _Targets(), clips=2)
    off = score.shares(_Attender(False), _Cache(), _Targets(), clips=2)
    for s in on:
        blocks, chance = on[s]
        assert chance == pytest.approx(0.25) and blocks == pytest.approx([1.0] * 3, abs=1e-4)
        blocks, chance = off[s]
        assert blocks == pytest.approx([0.25] * 3)


class _Sampler:
    """A stand-in pipeline whose data estimates are given clips, in order (the last is the clip)."""

    def __init__(self, clips: list[np.ndarray]):
        self.clips = clips

    def sample_latents(self, prompts, seed, callback):
        for i, clip in enumerate(self.clips):
            callback(i, clip[None])
        return self.clips[-1][None]

    def decode_latents(self, x):
        return x


def test_commit_steps_settle_colour_then_shape_then_size() -> None:
    """Nothing, then the right colours with swapped shapes, then swapped sizes, then the truth:
    colour settles at step 2, shape at 4, size at 6; a clip that never settles reads last."""
    from nanosora.evaluate.scenes import ground_truth

    commit = _script("commit_steps")
    truth = "a big orange square and a small yellow circle"
    shapes = ground_truth("a big orange circle and a small yellow square", 1)
    sizes = ground_truth("a small orange square and a big yellow circle", 2)
    right = ground_truth(truth, 3)
    clips = [np.zeros_like(right)] * 2 + [shapes] * 2 + [sizes] * 2 + [right] * 2
    readings, passed = commit.clip_readings(_Sampler(clips), truth, seed=0)
    assert passed and len(readings) == 9
    assert commit.settling_steps(readings) == {"colour": 2, "shape": 4, "size": 6}
    readings, passed = commit.clip_readings(_Sampler(clips[:6]), truth, seed=0)
    assert not passed
    assert commit.settling_steps(readings) == {"colour": 2, "shape": 4, "size": 4}
