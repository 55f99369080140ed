"""scripts/scenes_compute_plot.py's table of failure kinds, read from snapshot reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "scenes_compute_plot", Path(__file__).parents[1] / "scripts/scenes_compute_plot.py"
)
plot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plot)  # type: ignore[union-attr]


def _report(run: Path, step: int, failures: dict[str, int] | None, clips: int = 4) -> None:
    d = run / f"snapshots/step_{step:06d}/bench"
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


def test_kinds_table_asks_for_a_regrade_of_an_old_report(tmp_path: Path) -> None:
    _report(tmp_path / "old", 2000, None)
    with pytest.raises(SystemExit, match="no failure kinds: run its bench-scenes again"):
        plot.kinds_table([tmp_path / "old"])
