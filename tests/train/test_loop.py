"""The training loop: its progress display (seconds against a wall-clock budget, else steps),
weighted batch draws and the Muon + AdamW optimizer."""

import copy

import pytest
import torch

from nanosora.config import ConfigError, OptimConfig, TrainConfig
from nanosora.models.dit import DiTConfig, VideoDiT
from nanosora.train.loop import (
    MuonAdamW,
    Progress,
    build_optimizer,
    muon_matrices,
    prepare,
    set_lr,
    weighted_batch_indices,
)


def shown(capsys) -> str:
    """The last state of the bar printed to stderr."""
    return capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]


def test_a_time_budgeted_run_shows_seconds_against_the_budget(capsys):
    t = TrainConfig(steps=100_000, minutes=2.0)
    progress = Progress("dit", t, {"step": 40, "elapsed": 30.4}, enabled=True)
    progress.update({"step": 41, "elapsed": 61.0})
    progress.show({"step": 41, "elapsed": 61.0}, {"loss": 0.25})
    progress.close()
    line = shown(capsys)
    assert "dit (time budget)" in line and "61/120 s" in line and "step=41" in line, line
    assert "100000" not in line  # the step cap is not the measure of progress
    progress = Progress("dit", t, {"step": 90, "elapsed": 100.0}, enabled=True)
    progress.update({"step": 91, "elapsed": 500.0})  # past the budget: the bar ends at its end
    progress.close()
    assert "120/120 s" in shown(capsys)


def test_a_step_bounded_run_shows_steps(capsys):
    progress = Progress("vae", TrainConfig(steps=50), {"step": 10, "elapsed": 3.0}, enabled=True)
    progress.update({"step": 11, "elapsed": 3.5})
    progress.close()
    assert "11/50" in shown(capsys)


def test_weighted_batches_follow_the_weights_and_depend_on_seed_and_step_alone():
    weights = torch.tensor([0.0] * 10 + [1.0] * 10 + [9.0] * 10, dtype=torch.float64)
    draws = [weighted_batch_indices(weights, 8, step, seed=3) for step in range(400)]
    assert draws[17] == weighted_batch_indices(weights, 8, 17, seed=3)  # a resumed run's batch
    assert draws[17] != weighted_batch_indices(weights, 8, 17, seed=4)
    assert all(len(set(b)) == 8 for b in draws)  # no clip twice in a batch
    flat = torch.tensor([i for b in draws for i in b])
    assert not (flat < 10).any()  # weight 0: never drawn
    heavy = (flat >= 20).float().mean().item()
    # without replacement inside a batch of 8 the heavy clips' share sits below 0.9
    assert 0.7 < heavy < 0.9, heavy
    with pytest.raises(ValueError, match="5 clips of weight > 0 cannot fill a batch of 8"):
        weighted_batch_indices(torch.tensor([1.0] * 5 + [0.0] * 20), 8, 0, seed=0)


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
    torch.manual_seed(0)
    dit = VideoDiT(DiTConfig(in_channels=4, patch_t=1, patch_hw=2, dim=32, depth=2, heads=2, text_dim=16))  # fmt: skip
    names = muon_matrices(dit)
    params = dict(dit.named_parameters())
    assert "blocks.0.attn.qkv.weight" in names and "blocks.1.mlp.2.weight" in names
    assert all(n.startswith("blocks.") and params[n].ndim == 2 for n in names)
    assert "patch_embed.weight" not in names and "out.weight" not in names  # input / output layers
    assert "blocks.0.attn.qkv.bias" not in names
    opt = build_optimizer(dit, OptimConfig(kind="muon", lr=0.01))
    assert isinstance(opt, MuonAdamW)
    assert {id(p) for g in opt.muon.param_groups for p in g["params"]} == {id(params[n]) for n in names}  # fmt: skip
    inner = [p for g in opt.param_groups for p in g["params"]]
    assert len(inner) == len(params) and {id(p) for p in inner} == {id(p) for p in params.values()}
    # the schedule's lr reaches both optimizers
    set_lr(opt, 0, OptimConfig(kind="muon", lr=0.02, warmup_steps=2), TrainConfig(steps=10), {})
    assert {g["lr"] for g in opt.param_groups} == {0.01}
    with pytest.raises(ConfigError, match="optim.kind must be adamw or muon"):
        OptimConfig(kind="sgd")


def test_muon_state_round_trips_and_its_update_is_orthogonalised():
    def model():
        torch.manual_seed(0)
        return VideoDiT(DiTConfig(in_channels=4, patch_t=1, patch_hw=2, dim=32, depth=1, heads=2, text_dim=16))  # fmt: skip

    def grads(m, seed):
        g = torch.Generator().manual_seed(seed)
        for p in m.parameters():
            p.grad = torch.randn(p.shape, generator=g)

    o = OptimConfig(kind="muon", lr=0.01)
    a, b = model(), model()
    opt_a = build_optimizer(a, o)
    grads(a, 1)
    opt_a.step()
    opt_b = build_optimizer(b, o)
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as a checkpoint holds it
    before = a.blocks[0].mlp[0].weight.detach().clone()
    for m, opt in ((a, opt_a), (b, opt_b)):
        grads(m, 2)
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    # Muon's step is a near-orthogonal matrix: its singular values are close to one another,
    # where a raw gradient's spread widely
    delta = a.blocks[0].mlp[0].weight.detach() - before
    sv = torch.linalg.svdvals(delta)
    assert sv.max() / sv.min() < 2  # 1.5 here; AdamW's step from the same gradients: 2.9
    with pytest.raises(ValueError, match="not Muon \\+ AdamW"):
        opt_b.load_state_dict(build_optimizer(model(), OptimConfig()).state_dict())


def test_muon_refuses_fsdp_before_sharding_anything():
    dit = VideoDiT(DiTConfig(in_channels=4, patch_t=1, patch_hw=2, dim=32, depth=1, heads=2, text_dim=16))  # fmt: skip
    with pytest.raises(ValueError, match="muon needs whole matrices: use train.parallel=ddp"):
        prepare(dit, OptimConfig(kind="muon"), TrainConfig(parallel="fsdp"), None, None, False)
