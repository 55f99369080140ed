"""The training loop's progress display: seconds against a wall-clock budget, else steps."""

from nanosora.config import TrainConfig
from nanosora.train.loop import Progress


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
