"""Few-step distillation: the teacher's pairs, the reflow loss, the exported pipeline, resumption,
and which transformer a pipeline samples with."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nanosora.config import DistillConfig, OptimConfig, PipelineConfig, TrainConfig
from nanosora.diffusion.flow import add_noise, sample_schedule, stochastic_sample
from nanosora.models.dit import VideoDiT
from nanosora.pipeline import FEW_STEP, Pipeline, replace_cfg
from nanosora.shapes.captions import parse_prompt
from nanosora.shapes.grammar import canonical_caption, parse
from nanosora.shapes.scenes import is_held_out, near_misses, render, sample_scene
from nanosora.train import distill


def small_run(out, steps=2, **fields):
    return DistillConfig(
        **fields,
        pairs=3,
        pair_batch=2,
        teacher_steps=3,
        optim=OptimConfig(warmup_steps=1),
        train=TrainConfig(out_dir=str(out), batch_size=2, steps=steps, log_every=1, ckpt_every=1),
        sample_prompts=("a red circle moving left",),
    )


@pytest.mark.shipped_model
def test_distill_run_exports_a_few_step_pipeline_and_resumes(tmp_path, monkeypatch):
    levels_seen = []
    reflow_loss = distill.reflow_loss

    def spy(student, pairs, indices, levels, *rest):
        levels_seen.append(levels)
        return reflow_loss(student, pairs, indices, levels, *rest)

    monkeypatch.setattr(distill, "reflow_loss", spy)
    teacher_calls = []
    make_pairs = distill.make_pairs

    def pairs_spy(pipe, *rest):
        teacher_calls.append(pipe.serves_few_step(3))
        return make_pairs(pipe, *rest)

    monkeypatch.setattr(distill, "make_pairs", pairs_spy)
    run = distill.main(small_run(tmp_path / "run", grid_shift=1.0))
    # It trains on the evenly spaced grid of grid_shift 1 and samples at the teacher's shift.
    torch.testing.assert_close(levels_seen[0], torch.tensor([0.25, 0.5, 0.75, 1.0]))
    # The shipped teacher carries a student, yet its 3-step pairs come from its main transformer.
    assert teacher_calls == [False]
    pairs = sorted((run / "pairs").glob("pairs_*.safetensors"))
    assert len(pairs) == 2  # ceil(3 / 2) chunks
    chunk = load_file(str(pairs[0]))
    prompts = json.loads(pairs[0].with_suffix(".json").read_text())
    assert len(prompts) == 2 and all(None not in parse_prompt(p) for p in prompts)
    assert chunk["noise"].shape == chunk["latents"].shape == (2, 8, 5, 8, 8)
    assert chunk["text"].shape[1] == 32 and chunk["keep"].dtype == torch.bool
    # The starting noise is the seed's, as the pipeline draws it.
    pipe = Pipeline.load(run / "pipeline")
    assert pipe.cfg.few_step_max == 4 and (run / "pipeline" / FEW_STEP).is_dir()
    assert pipe.cfg.few_step_shift == 0.0 and pipe.cfg.few_step_eta == 1.0
    assert not torch.equal(pipe.few_step.out.weight, pipe.dit.out.weight)  # it trained
    assert (run / "samples" / "final.gif").stat().st_size > 0
    # Resuming for more steps keeps the pairs and continues from the saved step.
    stamp = pairs[0].stat().st_mtime_ns
    distill.main(small_run(tmp_path / "run", steps=3, grid_shift=1.0), resume=True)
    assert pairs[0].stat().st_mtime_ns == stamp
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


@pytest.mark.shipped_model
def test_few_step_transformer_serves_few_steps_only():
    """At <= few_step_max steps text-to-video runs the student, one forward per step (guidance
    built in); more steps, or image-to-video, run the teacher."""
    base = Pipeline.load(None)
    student = VideoDiT(base.dit.cfg).eval()
    student.load_state_dict(base.dit.state_dict())
    pipe = replace_cfg(
        Pipeline(base.vae, base.dit, base.text_encoder, base.cfg, student), few_step_max=4
    )
    assert pipe.serves_few_step(4) and not pipe.serves_few_step(5)
    assert not pipe.serves_few_step(2, num_frames=1) and not pipe.serves_few_step(2, given=True)
    assert not replace_cfg(pipe, few_step_max=0).serves_few_step(2)
    calls = {"teacher": 0, "student": 0}
    base.dit.register_forward_hook(lambda *a: calls.__setitem__("teacher", calls["teacher"] + 1))
    student.register_forward_hook(lambda *a: calls.__setitem__("student", calls["student"] + 1))
    pipe.sample_latents(["a red circle moving left"], steps=4)
    assert calls == {"teacher": 0, "student": 4}
    pipe.sample_latents(["a red circle moving left"], steps=5)
    assert calls["teacher"] == 5 and calls["student"] == 4
    first = pipe.generate(["a red circle moving left"], steps=3)[0, :1]
    pipe.sample_latents(["a red circle moving left"], steps=2, prefix=first)
    assert calls["teacher"] == 7 and calls["student"] == 4 + 3
    pipe.sample_latents(["a red circle moving left"], steps=2, num_frames=1)  # an image
    assert calls["teacher"] == 9 and calls["student"] == 7


def test_reflow_paths_are_straight():
    """Where the student predicts the pair's straight velocity, the loss is 0 and Euler sampling
    at the few-step schedules lands on the teacher's latents from its noise, at any step count."""
    g = torch.Generator().manual_seed(0)
    z, x0 = torch.randn(2, 4, 2, 4, 4, generator=g), torch.randn(2, 4, 2, 4, 4, generator=g)

    class Straight(torch.nn.Module):
        def forward(self, x, s, text, mask):
            return z - x0

    pairs = {"noise": z, "latents": x0, "text": torch.zeros(2, 3, 8), "mask": torch.ones(2, 3)}
    levels = torch.tensor([1.0, 0.75, 0.5])
    loss = distill.reflow_loss(Straight(), pairs, [0, 1], levels, 0.5, False, g)
    assert loss.item() < 1e-12
    weighted = distill.reflow_loss(Straight(), pairs, [0, 1], levels, 0.5, False, g, 4.0)
    assert weighted.item() < 1e-12  # weighting the cells keeps an exact student exact
    for steps in (1, 2, 4):
        out = stochastic_sample(lambda x, s: z - x0, z, sample_schedule(steps, 3.0), 0.0)
        torch.testing.assert_close(out, x0)
    # A point on the path: x_s = (1 - s) x0 + s z.
    torch.testing.assert_close(add_noise(x0, z, torch.full((2,), 0.25)), 0.75 * x0 + 0.25 * z)


def test_few_step_levels_are_the_schedules():
    pipe = Pipeline.load(None)
    levels = distill.few_step_levels(replace_cfg(pipe, few_step_shift=3.0), (2, 4))
    assert levels.max().item() == 1.0 and levels.min().item() > 0.0
    # shift 3 at the base token count: 2 steps visit 1 and 0.75; 4 steps add 0.9 and 0.5.
    torch.testing.assert_close(levels, torch.tensor([0.5, 0.75, 0.9, 1.0]))
    # shift 1: evenly spaced, so the last step starts at 0.25 rather than at 0.5.
    levels = distill.few_step_levels(replace_cfg(pipe, few_step_shift=1.0), (2, 4))
    torch.testing.assert_close(levels, torch.tensor([0.25, 0.5, 0.75, 1.0]))


@pytest.mark.shipped_model
def test_few_step_transformer_samples_with_its_own_shift():
    """few_step_shift sets the student's schedule and leaves the teacher's alone."""
    base = Pipeline.load(None)
    student = VideoDiT(base.dit.cfg).eval()
    student.load_state_dict(base.dit.state_dict())
    pipe = Pipeline(base.vae, base.dit, base.text_encoder, base.cfg, student)
    seen = {"teacher": [], "student": []}
    for name, dit in (("teacher", base.dit), ("student", student)):
        dit.register_forward_hook(lambda m, a, out, n=name: seen[n].append(a[1][0].item()))
    replace_cfg(pipe, few_step_max=4, few_step_shift=1.0).sample_latents(["a red ball"], steps=4)
    assert seen["student"] == pytest.approx([1.0, 0.75, 0.5, 0.25])
    replace_cfg(pipe, few_step_max=4).sample_latents(["a red ball"], steps=4)  # 0: the shift
    assert seen["student"][4:] == pytest.approx([1.0, 0.9, 0.75, 0.5])
    replace_cfg(pipe, few_step_max=2, few_step_shift=1.0).sample_latents(["a red ball"], steps=3)
    assert seen["teacher"][:2] == pytest.approx([1.0, 6 / 7])  # the shift 3 schedule


@pytest.mark.shipped_model
def test_few_step_eta_renews_the_students_noise_only():
    """few_step_eta is the student's share of fresh noise per step: 0 is Euler, 1 draws each
    prompt's fresh noise from its seed (reproducible); the teacher keeps its own eta."""
    base = Pipeline.load(None)
    student = VideoDiT(base.dit.cfg).eval()
    student.load_state_dict(base.dit.state_dict())
    pipe = replace_cfg(
        Pipeline(base.vae, base.dit, base.text_encoder, base.cfg, student), few_step_max=4
    )
    prompt = ["a red circle moving left"]
    renewed = replace_cfg(pipe, few_step_eta=1.0).sample_latents(prompt, steps=4, seed=3)
    again = replace_cfg(pipe, few_step_eta=1.0).sample_latents(prompt, steps=4, seed=3)
    euler = replace_cfg(pipe, few_step_eta=0.0).sample_latents(prompt, steps=4, seed=3)
    torch.testing.assert_close(renewed, again)
    assert (renewed - euler).abs().max() > 1e-2
    # Euler from the seed's noise, by hand: the student's velocity at the shifted schedule.
    text, mask = pipe.text_encoder(prompt)
    x = torch.randn(euler.shape[1:], generator=torch.Generator().manual_seed(3))[None]
    shift = pipe.sampling_shift(tuple(x.shape[1:]), True)
    with torch.no_grad():
        by_hand = stochastic_sample(
            lambda z, s: student(z, s, text, mask), x, sample_schedule(4, shift), 0.0
        )
    torch.testing.assert_close(euler, by_hand, rtol=1e-4, atol=1e-4)
    # The teacher's samples (5 steps > few_step_max) do not depend on few_step_eta.
    teacher = [replace_cfg(pipe, few_step_eta=e).sample_latents(prompt, steps=5) for e in (0, 1)]
    torch.testing.assert_close(*teacher)


def test_bad_distill_config_is_named():
    with pytest.raises(ValueError, match="few_steps"):
        DistillConfig(few_steps=(0,))
    with pytest.raises(ValueError, match="teacher_eta"):
        DistillConfig(teacher_eta=2.0)
    with pytest.raises(ValueError, match="few_step_shift"):
        DistillConfig(few_step_shift=-1.0)
    with pytest.raises(ValueError, match="few_step_shift"):
        PipelineConfig(few_step_shift=-1.0)
    with pytest.raises(ValueError, match="grid_shift"):
        DistillConfig(grid_shift=-1.0)
    with pytest.raises(ValueError, match="few_step_eta"):
        PipelineConfig(few_step_eta=1.5)


def test_scenes_teacher_draws_and_grades_scenes_prompts():
    """A scenes teacher's pairs come from the scenes world's training compositions, every
    category alike, and the filter is the scenes grader: a true render passes, a near miss fails."""
    cfg = DistillConfig(pair_batch=64)
    prompts = distill.chunk_prompts(cfg, 0, [], "scenes")
    comps = [parse(p)[0] for p in prompts]
    assert len({c.category for c in comps}) >= 6 and not any(map(is_held_out, comps))
    assert distill.chunk_prompts(cfg, 0, [], "scenes") == prompts  # seeded by the chunk
    assert distill.chunk_prompts(cfg, 1, [], "scenes") != prompts
    # Without a scenes vocabulary the shapes world's captions, as before.
    assert all(None not in parse_prompt(p) for p in distill.chunk_prompts(cfg, 0, [], "shapes"))
    scene = sample_scene(np.random.default_rng(3), "spatial")
    frames = render(scene)
    assert distill.matches(frames, scene.caption, "scenes")
    miss = canonical_caption(near_misses(scene.composition)[0])
    assert not distill.matches(frames, miss, "scenes")
