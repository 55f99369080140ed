"""scripts/scenes_recipe.sh: stages run in order, finished ones are skipped, a stopped
training stage resumes, kept snapshots and the finished model are benchmarked (with a stand-in
for the nanosora command)."""

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scenes_recipe.sh"


def run_recipe(tmp_path: Path, *extra: str) -> list[str]:
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    stub = tmp_path / "nanosora"
    stub.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n')
    stub.chmod(0o755)
    env = {**os.environ, "NANOSORA": str(stub), "ROOT": str(tmp_path / "runs")}
    subprocess.run(["bash", str(SCRIPT), *extra], env=env, check=True, capture_output=True)
    return calls.read_text().splitlines() if calls.exists() else []


def test_recipe_runs_every_stage_once_then_resumes_only_the_stopped_one(tmp_path):
    first = run_recipe(tmp_path, "train.steps=10")
    assert [c.split(" --")[0] for c in first] == [
        "scenes",
        "scenes",
        "scenes",
        "train vae",
        "cache",
        "train dit",
        "train dit",
        "bench-scenes",
    ]
    assert "configs/scenes_vae_s4.yaml" in first[3] and "scenes_vae_s4" in first[4]
    assert first[-3].endswith("configs/scenes_dit.yaml train.steps=10")
    assert first[-2].endswith("configs/scenes_dit_masks.yaml")
    final = tmp_path / "runs" / "scenes_dit_masks" / "pipeline"
    assert first[-1] == f"bench-scenes --model {final} -o {final}/bench --per-group 8 --seeds 1"
    assert not any("--resume" in c for c in first)
    assert run_recipe(tmp_path) == []  # every stage finished

    # The DiT stage stopped after a checkpoint: only it runs again, resuming.
    dit = tmp_path / "runs" / "scenes_dit"
    (dit / ".recipe_done").unlink()
    (dit / "state.pt").write_bytes(b"")
    assert run_recipe(tmp_path) == ["train dit --config configs/scenes_dit.yaml --resume"]

    # Each snapshot the DiT kept is benchmarked once.
    snap = dit / "snapshots" / "step_002000"
    snap.mkdir(parents=True)
    assert run_recipe(tmp_path) == [
        f"bench-scenes --model {snap} -o {snap}/bench --per-group 8 --seeds 1"
    ]
    assert run_recipe(tmp_path) == []


def test_a_failed_stage_stops_the_recipe_unmarked(tmp_path):
    calls = tmp_path / "calls.txt"
    stub = tmp_path / "nanosora"
    stub.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n[[ $1 != cache ]]\n')
    stub.chmod(0o755)
    env = {**os.environ, "NANOSORA": str(stub), "ROOT": str(tmp_path / "runs")}
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True)
    assert done.returncode != 0
    assert calls.read_text().splitlines()[-1].startswith("cache")
    assert not (tmp_path / "runs" / "scenes" / "cache_s4_cl4" / ".recipe_done").exists()
