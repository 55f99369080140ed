"""Preference fine-tuning against the scenes grader: pairing, the DPO loss, ground-truth
winners, and a whole run on a scenes pipeline (resumed)."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nanosora.config import ConfigError, DiTConfig, OptimConfig, PreferenceConfig, TrainConfig
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import SHIPPED_MODEL, Pipeline, replace_cfg
from nanosora.shapes.grader import grade_prompt
from nanosora.shapes.grammar import CATEGORIES, canonical_caption, parse
from nanosora.shapes.scenes import composition_for, is_held_out, near_misses
from nanosora.train import dpo


def test_every_failing_clip_is_paired_with_a_winner():
    passed = [[True, False, False], [True, True, True], [False, False, False], [False, True, True]]
    assert dpo.pair_up(passed, data_winners=True) == [
        (0, 0, 1), (0, 0, 2),  # one winner for both losers
        (2, -1, 0), (2, -1, 1), (2, -1, 2),  # no clip passed: the ground truth wins
        (3, 1, 0),
    ]  # fmt: skip
    assert dpo.pair_up(passed, data_winners=False) == [(0, 0, 1), (0, 0, 2), (3, 1, 0)]
    # Winners are used in turn.
    assert dpo.pair_up([[True, False, True, False]], False) == [(0, 0, 1), (0, 2, 3)]


def test_prompts_are_training_captions_of_the_chosen_categories():
    cfg = PreferenceConfig(prompts=40, prompt_batch=32)
    prompts = dpo.chunk_prompts(cfg, 0)
    comps = [parse(p) for p in prompts]
    assert len(prompts) == 32 and len(dpo.chunk_prompts(cfg, 1)) == 8  # the last chunk is short
    assert all(phrasing == "train" and not is_held_out(c) for c, phrasing in comps)
    assert len({c.category for c, _ in comps}) >= 6
    assert dpo.chunk_prompts(cfg, 0) == prompts  # seeded by the chunk: a resumed run redraws them
    some = PreferenceConfig(prompt_batch=16, categories=("spatial", "interactions"))
    assert {parse(p)[0].category for p in dpo.chunk_prompts(some, 0)} == {"spatial", "interactions"}
    with pytest.raises(ValueError, match="motions"):
        dpo.chunk_prompts(PreferenceConfig(categories=("motions",)), 0)


def tiny_pairs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 4, 3, 8, 8)
    return {
        "winners": torch.randn(shape, generator=g),
        "losers": torch.randn(shape, generator=g),
        "text": torch.randn(n, 5, 16, generator=g),
        "mask": torch.ones(n, 5, dtype=torch.bool),
    }


def test_dpo_loss_starts_at_log_two_and_learns_to_prefer_winners():
    torch.manual_seed(0)
    cfg = PreferenceConfig(train=TrainConfig(bf16=False), beta=200.0)
    reference = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=1, heads=2, text_dim=16)).eval()
    policy = VideoDiT(reference.cfg)
    policy.load_state_dict(reference.state_dict())
    pairs, rows = tiny_pairs(), list(range(6))
    loss, parts = dpo.dpo_loss(policy, reference, pairs, rows, cfg, torch.Generator().manual_seed(1))  # fmt: skip
    # The policy is the reference: no preference yet.
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)
    assert parts["reward_acc"] == 0.0 and parts["winner_gain"] == parts["loser_gain"] == 0.0
    opt = torch.optim.Adam(policy.parameters(), lr=1e-3)
    for step in range(30):
        opt.zero_grad()
        loss, parts = dpo.dpo_loss(policy, reference, pairs, rows, cfg, torch.Generator().manual_seed(step))  # fmt: skip
        loss.backward()
        opt.step()
    loss, parts = dpo.dpo_loss(policy, reference, pairs, rows, cfg, torch.Generator().manual_seed(99))  # fmt: skip
    # Fitted better than the reference on winners, worse on losers, at unseen noise.
    assert parts["reward_acc"] == 1.0 and loss.item() < 0.3
    assert parts["winner_gain"] < 0 < parts["loser_gain"]
    # The reference has no gradient; the winners' flow loss is added with sft_weight.
    assert all(p.grad is None for p in reference.parameters())
    sft = PreferenceConfig(train=TrainConfig(bf16=False), beta=200.0, sft_weight=1.0)
    with_sft, _ = dpo.dpo_loss(policy, reference, pairs, rows, sft, torch.Generator().manual_seed(99))  # fmt: skip
    assert with_sft.item() > loss.item()


def test_bad_preference_config_is_named():
    with pytest.raises(ConfigError, match="samples_per_prompt"):
        PreferenceConfig(samples_per_prompt=0)
    with pytest.raises(ConfigError, match="data_winners"):
        PreferenceConfig(samples_per_prompt=1, data_winners=False)
    with pytest.raises(ConfigError, match="beta"):
        PreferenceConfig(beta=0.0)
    with pytest.raises(ConfigError, match="level_shift"):
        PreferenceConfig(level_shift=0.0)


@pytest.fixture(scope="module")
def scenes_pipeline(tmp_path_factory):
    """The shipped model relabelled a scenes pipeline (it draws one object; the grader judges)."""
    out = tmp_path_factory.mktemp("scenes") / "pipeline"
    replace_cfg(Pipeline.load(), vocabulary="scenes", few_step_max=0).save(out)
    return out


def test_ground_truth_clips_show_their_prompts_exactly():
    """The ground-truth winner of every category passes the grader; a near miss does not."""
    prompts = [canonical_caption(c) for c in dpo_compositions()]
    clips = dpo.truth_clips(prompts, seed=0)
    assert clips.shape == (len(prompts), 17, 64, 64, 3) and clips.dtype == np.uint8
    assert all(grade_prompt(v, p).passed for v, p in zip(clips, prompts))
    for clip, prompt in zip(clips, prompts):
        miss = canonical_caption(near_misses(parse(prompt)[0])[0])
        assert not grade_prompt(clip, miss).passed, miss
    assert not np.array_equal(dpo.truth_clips(prompts, seed=1), clips)  # a fresh layout per seed


def dpo_compositions():
    """One training composition of each category."""
    rng = np.random.default_rng(5)
    return [composition_for(rng, c, "train") for c in CATEGORIES]


@pytest.mark.shipped_model
def test_ground_truth_latents_decode_to_the_clip(scenes_pipeline):
    """Encoded by the pipeline's VAE (the shipped one: one object), the winner still shows it."""
    pipe = Pipeline.load(scenes_pipeline)
    latents = dpo.ground_truth(pipe, ["a red circle moving left"], seed=0)
    assert latents.shape == (1, 8, 5, 8, 8)
    assert grade_prompt(pipe.decode_latents(latents)[0], "a red circle moving left").passed


@pytest.mark.shipped_model
def test_a_preference_run_pairs_trains_exports_and_resumes(scenes_pipeline, tmp_path):
    def run_cfg(steps):
        return PreferenceConfig(
            model=str(scenes_pipeline),
            prompts=6,
            prompt_batch=4,
            categories=("single", "numeracy"),
            samples_per_prompt=2,
            sample_steps=3,
            optim=OptimConfig(lr=1e-4, warmup_steps=1),
            train=TrainConfig(
                out_dir=str(tmp_path / "run"), batch_size=2, steps=steps, log_every=1, ckpt_every=1
            ),  # fmt: skip
            sample_prompts=("a red circle moving left",),
        )

    run = dpo.main(run_cfg(2))
    chunks = sorted((run / "pairs").glob("pairs_*.safetensors"))
    assert len(chunks) == 2  # ceil(6 / 4)
    records = [json.loads(c.with_suffix(".json").read_text()) for c in chunks]
    assert [len(r["prompts"]) for r in records] == [4, 2]
    pairs_total = 0
    for chunk, record in zip(chunks, records):
        tensors = load_file(str(chunk))
        n = len(record["pairs"])
        pairs_total += n
        assert tensors["winners"].shape == tensors["losers"].shape == (n, 8, 5, 8, 8)
        assert tensors["text"].shape[:2] == (n, 32) and tensors["mask"].shape == (n, 32)
        # Each pair's loser is a failed clip, its winner a passed one or the ground truth.
        for p, win, lose in record["pairs"]:
            assert not record["passed"][p][lose] and (win < 0 or record["passed"][p][win])
    assert pairs_total > 0  # a 3-step sampler fails some clips
    rates = json.loads((run / "pairs" / "pass_rates.json").read_text())
    assert set(rates) <= {"single", "numeracy"} and sum(r["clips"] for r in rates.values()) == 12
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert {"dpo", "reward_acc", "winner_gain", "loser_gain"} <= set(metrics[0])
    tuned, base = Pipeline.load(run / "pipeline"), Pipeline.load(scenes_pipeline)
    assert tuned.cfg == base.cfg and tuned.few_step is None  # sampler and text settings kept
    assert not torch.equal(tuned.dit.out.weight, base.dit.out.weight)  # it trained
    assert (run / "samples" / "final.gif").stat().st_size > 0
    # Resuming keeps the pairs and continues from the saved step.
    stamp = chunks[0].stat().st_mtime_ns
    dpo.main(run_cfg(3), resume=True)
    assert chunks[0].stat().st_mtime_ns == stamp
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.shipped_model
def test_a_shapes_pipeline_or_none_is_refused(tmp_path):
    shapes = PreferenceConfig(model=str(SHIPPED_MODEL), train=TrainConfig(out_dir=str(tmp_path / "a")))  # fmt: skip
    with pytest.raises(ValueError, match="needs a scenes pipeline"):
        dpo.main(shapes)
    with pytest.raises(ValueError, match="model: give"):
        dpo.main(PreferenceConfig(train=TrainConfig(out_dir=str(tmp_path / "b"))))
