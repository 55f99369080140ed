"""The training loop: its progress display (seconds against a wall-clock budget, else steps) and
weighted batch draws."""

import pytest
import torch

from nanosora.config import TrainConfig
from nanosora.train.loop import Progress, weighted_batch_indices


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
