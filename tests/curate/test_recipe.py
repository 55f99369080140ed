"""Recipes: Data-Juicer's own recipes load; problems are named before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanosora.curate.ops import build_op
from nanosora.curate.ops.base import OpError
from nanosora.curate.recipe import RecipeError, load_recipe

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
DJ_RECIPES = sorted(FIXTURES.glob("datajuicer_*.yaml"))


def test_fixture_recipes_exist() -> None:
    assert len(DJ_RECIPES) == 4, f"expected the 4 Data-Juicer recipes in {FIXTURES}"


@pytest.mark.parametrize("path", DJ_RECIPES, ids=lambda p: p.stem)
def test_datajuicer_recipes_load_and_report_what_cannot_run(path: Path) -> None:
    recipe = load_recipe(path, strict=False)
    assert recipe.ops, "every fixture recipe has a process list"
    # The only operator we lack is the text perplexity filter (a KenLM model); model-based
    # operators exist but name their missing local weights.
    unknown = [name for name, why in recipe.problems if why.endswith("not available in nanosora")]
    assert unknown == (["perplexity_filter"] if "general-video" in path.name else [])
    for name, why in recipe.problems:
        assert name in why
        if name != "perplexity_filter":
            assert "model weights not found" in why


def test_ray_demo_recipe_loads_fully() -> None:
    recipe = load_recipe(FIXTURES / "datajuicer_process_video_on_ray_demo.yaml")
    assert recipe.executor_type == "ray"
    assert [s.name for s in recipe.ops][:3] == [
        "video_duration_filter",
        "video_resolution_filter",
        "video_split_by_duration_mapper",
    ]


def test_strict_load_names_unknown_operator(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("dataset_path: a.jsonl\nexport_path: b.jsonl\nprocess:\n"
                    "  - video_duration_filter: {min_duration: 1}\n  - perplexity_filter: {}\n"
                    "  - frobnicate_mapper: {x: 1}\n")  # fmt: skip
    with pytest.raises(RecipeError, match="perplexity_filter") as e:
        load_recipe(path)
    assert "frobnicate_mapper" in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("np: 2\nbogus_key: 1\nprocess: []\n", "bogus_key"),
        ("process:\n  - video_duration_filter: {min_duration: -1}\n", "min_duration=-1"),
        (
            "process:\n  - video_duration_filter: {min_duration: 5, max_duration: 2}\n",
            "max_duration",
        ),
        ("process:\n  - video_motion_score_filter: {sampling_fps: 0}\n", "sampling_fps"),
        ("process:\n  - video_motion_score_filter: {typo_param: 1}\n", "typo_param"),
        ("process:\n  - video_aspect_ratio_filter: {min_ratio: 'wide'}\n", "min_ratio"),
        ("process:\n  - video_split_by_scene_mapper: {detector: Magic}\n", "detector"),
        ("np: 0\nprocess: []\n", "np"),
    ],
)
def test_bad_recipes_fail_naming_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=needle):
        load_recipe(path)


def test_aspect_ratio_accepts_datajuicer_string_forms() -> None:
    op = build_op("video_aspect_ratio_filter", {"min_ratio": "9:21", "max_ratio": "21/9"})
    row = {"width": 256, "height": 86}  # 2.98 > 21/9
    assert op.reason(row) is not None  # type: ignore[attr-defined]
    assert op.reason({"width": 210, "height": 90}) is None  # type: ignore[attr-defined]


def test_model_operator_fails_clearly_without_weights(tmp_path: Path) -> None:
    with pytest.raises(OpError, match="hf_clip=.*nanosora does not download"):
        build_op("video_frames_text_similarity_filter", {"hf_clip": str(tmp_path / "nope")})
