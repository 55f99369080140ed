"""Strict config loading: YAML mirrors the dataclasses, unknown keys fail, overrides are dotted."""

from pathlib import Path

import pytest

from nanosora.config import (
    DIT_PRESETS,
    ConfigError,
    DataConfig,
    DistillConfig,
    DiTConfig,
    DiTTrainConfig,
    PreferenceConfig,
    VAEConfig,
    VAETrainConfig,
    apply_overrides,
    describe,
    load_config,
    save_config,
)
from nanosora.pipeline import SHIPPED_MODEL


def test_yaml_round_trip(tmp_path):
    cfg = apply_overrides(
        DiTTrainConfig(), ["optim.lr=1e-4", "dit.depth=3", "sample_prompts=[a, b]"]
    )
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(DiTTrainConfig, tmp_path / "c.yaml") == cfg
    assert cfg.optim.lr == 1e-4 and cfg.dit.depth == 3 and cfg.sample_prompts == ("a", "b")


def test_partial_section_keeps_other_defaults(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  steps: 7\n")
    cfg = load_config(VAETrainConfig, tmp_path / "c.yaml")
    assert cfg.train.steps == 7
    assert (
        cfg.train.batch_size == VAETrainConfig().train.batch_size
    )  # section default, not TrainConfig's


@pytest.mark.parametrize(
    "text, message",
    [
        ("optim:\n  lrr: 1\n", "unknown key"),
        ("dit:\n  depth: two\n", "expected an integer"),
        ("dit:\n  attention: sparse\n", "not one of"),
        ("- 1\n- 2\n", "top level must be a mapping"),
        ("train:\n  stop_at: -1\n", "stop_at=-1 must be >= 0"),
    ],
)
def test_bad_yaml_names_the_field(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(DiTTrainConfig, tmp_path / "c.yaml")


def test_bad_overrides():
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(DiTTrainConfig(), ["optim.nope=1"])
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(DiTTrainConfig(), ["optim.lr"])
    with pytest.raises(ConfigError, match="not divisible"):
        apply_overrides(DiTTrainConfig(), ["dit.heads=5"])


def test_category_weights_parse_and_bad_entries_name_themselves():
    cfg = apply_overrides(DiTTrainConfig(), ["category_weights=[attributes=3, single=0.5]"])
    assert cfg.weights_by_category() == {"attributes": 3.0, "single": 0.5}
    assert DiTTrainConfig().weights_by_category() == {}
    for bad in ("attributes", "attributes=x", "=2", "spatial=-1", "motion=nan"):
        with pytest.raises(ConfigError, match=f"category_weights: '{bad}' is not"):
            apply_overrides(DiTTrainConfig(), [f"category_weights=['{bad}']"])
    with pytest.raises(ConfigError, match="'motion' is given twice"):
        apply_overrides(DiTTrainConfig(), ["category_weights=[motion=1, motion=2]"])


def test_frame_count_must_be_4k_plus_1():
    with pytest.raises(ConfigError, match="4k\\+1"):
        DataConfig(num_frames=16)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config(DiTTrainConfig, "/nonexistent/x.yaml")


def test_presets_and_describe():
    assert set(DIT_PRESETS) >= {"tiny", "shapes", "small", "base", "large"}
    lines = describe(DiTConfig)
    assert any(line.startswith("dim = ") and "#" in line for line in lines)


def test_every_shipped_config_loads() -> None:
    """Each recipe in configs/ loads into its config class (names and shapes checked), and the
    scenes VAE keeps the shipped VAE's architecture, so the shipped weights can start it."""
    root = Path(__file__).parents[1] / "configs"
    kinds = {"vae": VAETrainConfig, "distill": DistillConfig, "dit": DiTTrainConfig, "lora": DiTTrainConfig, "dpo": PreferenceConfig}  # fmt: skip
    seen = 0
    for path in sorted(root.glob("*.yaml")):
        kind = next(k for k in kinds if k in path.stem)
        load_config(kinds[kind], path)
        seen += 1
    assert seen >= 10
    scenes = load_config(VAETrainConfig, root / "scenes_vae.yaml")
    shipped = load_config(VAEConfig, SHIPPED_MODEL / "vae" / "config.yaml")
    assert scenes.vae == shipped and scenes.init_from.endswith("assets/shapes-model")
