"""The Ray engine gives the same output rows as the local engine (on a local Ray instance)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from nanosora.curate.runner import CurateConfig, main

from .conftest import write_recipe

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'nanosora[scale]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_engine_equals_local_engine(videos: Path, tmp_path: Path, local_ray: None) -> None:
    extra = "  - video_deduplicator: {}\n  - text_length_filter: {min_len: 5}\n"
    outs = {}
    for engine in ("local", "ray"):
        export = tmp_path / engine / "out.parquet"
        recipe = write_recipe(tmp_path / f"{engine}.yaml", videos, export, np=2, extra=extra)
        main(CurateConfig(recipe=recipe, engine=engine, progress=False))  # type: ignore[arg-type]
        outs[engine] = pd.read_parquet(export)
        outs[engine + "_rejects"] = pd.read_json(export.with_name("out.rejects.jsonl"), lines=True)
    assert len(outs["local"]) == 15
    pd.testing.assert_frame_equal(outs["ray"], outs["local"])
    pd.testing.assert_frame_equal(outs["ray_rejects"], outs["local_rejects"])
