"""Every CLI command, found by walking the command tree, answers `--help`; the stable names stay."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from nanosora.cli import app

ROOT = typer.main.get_command(app)


def command_paths(cmd: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand as its argv prefix, the root included."""
    paths = [prefix]
    # typer vendors its own click: a group is whatever has subcommands
    for name, sub in getattr(cmd, "commands", {}).items():
        paths += command_paths(sub, (*prefix, name))
    return paths


PATHS = command_paths(ROOT)


def test_the_stable_command_names_exist() -> None:
    # DESIGN.md section 2: these names are relied on outside the code.
    names = {p[0] for p in PATHS if p}
    stable = {"generate", "shapes", "quickstart", "train", "eval", "ingest", "curate", "analyze"}
    assert stable | {"story"} <= names
    assert {("train", "vae"), ("train", "dit")} <= set(PATHS)


@pytest.mark.parametrize("argv", PATHS, ids=lambda p: " ".join(p) or "nanosora")
def test_help_exits_zero(argv: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output and "--help" in result.output


def test_bench_scenes_cfg_interval_needs_two_numbers(tmp_path) -> None:
    result = CliRunner().invoke(app, ["bench-scenes", "-o", str(tmp_path), "--cfg-interval", "0.5"])
    assert result.exit_code == 2 and "--cfg-interval '0.5'" in result.output
    assert not any(tmp_path.iterdir())  # refused before any work


def test_cache_text_layers_must_be_integers(tmp_path) -> None:
    argv = ["cache", "--manifest", "m.parquet", "--vae", "v", "-o", str(tmp_path / "c"), "--text-layers", "last"]  # fmt: skip
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "--text-layers 'last'" in result.output


def test_mix_writes_one_manifest_and_names_a_bad_part(tmp_path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        pd.DataFrame({"path": ["x.mp4", "y.mp4"], "text": [name, name]}).to_parquet(
            tmp_path / name / "m.parquet"
        )
    out = tmp_path / "mix.parquet"
    argv = [
        "mix",
        str(tmp_path / "a" / "m.parquet"),
        f"{tmp_path / 'b' / 'm.parquet'}:1",
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "wrote 3 rows" in result.output and len(pd.read_parquet(out)) == 3
    result = CliRunner().invoke(app, ["mix", str(tmp_path / "a" / "m.parquet:5"), "-o", str(out)])
    assert result.exit_code == 2 and "5 rows asked, it has 2" in result.output


def test_ground_names_the_missing_truth(tmp_path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "meta.json").write_text(
        json.dumps({"manifest": str(tmp_path / "m.parquet"), "shards": []})
    )
    result = CliRunner().invoke(app, ["ground", str(cache)])
    assert result.exit_code != 0 and f"{tmp_path / 'truth.jsonl'}: no ground truth" in result.output
    assert not (cache / "grounding.npy").exists()


def test_scenes_writes_spatial_pairs_about_the_centre(tmp_path) -> None:
    args = [
        "scenes",
        "--out",
        str(tmp_path),
        "--num",
        "4",
        "--category",
        "spatial",
        "--workers",
        "1",
    ]
    result = CliRunner().invoke(app, [*args, "--spatial-centre", "3"])
    assert result.exit_code == 0, result.output
    for line in (tmp_path / "truth.jsonl").read_text().splitlines():
        a, b = json.loads(line)["objects"]
        mid = [(a[k][8] + a["side"][8] / 2 + b[k][8] + b["side"][8] / 2) / 2 for k in ("x", "y")]
        assert max(abs(m - 32) for m in mid) <= 3.01  # the pair's midpoint at the middle frame
    bad = CliRunner().invoke(app, [*args, "--spatial-centre", "-1"])
    assert bad.exit_code != 0 and "spatial_centre must be in [0, 16] px, got -1" in bad.output
