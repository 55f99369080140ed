"""Data-Juicer recipes: ``dataset_path``, ``export_path``, ``np``, ``process: [- op: {params}]``.

Loading checks everything before any work starts: an unknown top-level key, an operator
nanosora does not have, an unknown parameter, a parameter out of range or a model folder that
is not on disk each fail with the key or operator named (all problems at once, so one edit
fixes the recipe). Data-Juicer's global keys that only steer its own executor (tracer, cache,
op fusion, ...) are accepted and have no effect. ``executor_type: ray`` selects the Ray engine.

Relative ``dataset_path``/``export_path`` are relative to the current directory, as in
Data-Juicer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nanosora.curate.ops import build_op
from nanosora.curate.ops.base import Op, OpError

# Data-Juicer's global keys (configs/config_all.yaml of v1.6.1) that change nothing here.
DJ_GLOBAL_KEYS = frozenset({
    "project_name", "open_tracer", "trace_num", "trace_keys", "video_key", "image_key",
    "audio_key", "text_keys", "video_special_token", "image_special_token",
    "audio_special_token", "eoc_special_token", "ray_address", "use_cache", "ds_cache_dir",
    "cache_compress", "use_checkpoint", "temp_dir", "op_fusion", "fusion_strategy",
    "keep_stats_in_res_ds", "keep_hashes_in_res_ds", "export_shard_size", "export_in_parallel",
    "work_dir", "suffixes", "add_suffix", "skip_op_error", "turbo", "debug", "percentiles",
    "export_original_dataset", "save_stats_in_one_file", "hpo_config", "data_probe_algo",
    "data_probe_ratio", "executor_type", "auto", "auto_num", "op_list_to_trace",
    "open_insight_mining", "op_list_to_mine", "adaptive_batch_size", "event_logging",
    "export_type", "load_dataset_kwargs",
})  # fmt: skip
KEYS = frozenset({"dataset_path", "export_path", "np", "process"}) | DJ_GLOBAL_KEYS


class RecipeError(ValueError):
    """A recipe that cannot run; the message names every offending key or operator."""


@dataclass(frozen=True)
class OpSpec:
    """One recipe step: an operator name and its parameters (picklable, rebuilt in workers)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Op:
        return build_op(self.name, self.params)


@dataclass(frozen=True)
class Recipe:
    """A loaded recipe. ``problems`` (operator -> why it cannot run) is empty for a strict load."""

    path: Path
    dataset_path: Path | None
    export_path: Path | None
    np: int | None
    executor_type: str
    ops: tuple[OpSpec, ...]
    problems: tuple[tuple[str, str], ...] = ()


def _parse_step(i: int, step: Any) -> OpSpec:
    if isinstance(step, str):
        return OpSpec(step, {})
    if not (isinstance(step, dict) and len(step) == 1):
        raise RecipeError(f"process[{i}] must be '- op_name: {{params}}', got {step!r}")
    ((name, params),) = step.items()
    if params is not None and not isinstance(params, dict):
        raise RecipeError(f"process[{i}] {name}: parameters must be a mapping, got {params!r}")
    return OpSpec(str(name), dict(params or {}))


def load_recipe(path: str | Path, strict: bool = True) -> Recipe:
    """Read and check a recipe (module docstring).

    ``strict``: raise RecipeError for any operator problem; otherwise they are returned in
    ``Recipe.problems`` (so a Data-Juicer recipe can be inspected for what would not run).
    Unknown top-level keys and a malformed ``process`` list always raise.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    unknown = sorted(set(data) - KEYS)
    if unknown:
        raise RecipeError(f"{path}: unknown key(s) {unknown}")
    steps = data.get("process") or []
    if not isinstance(steps, list):
        raise RecipeError(f"{path}: 'process' must be a list of operators")
    specs = tuple(_parse_step(i, s) for i, s in enumerate(steps))
    problems = []
    for spec in specs:
        try:
            spec.build()
        except (OpError, TypeError) as e:
            problems.append((spec.name, str(e)))
    if problems and strict:
        lines = "\n  ".join(why for _, why in problems)
        raise RecipeError(f"{path}: {len(problems)} operator problem(s):\n  {lines}")
    np_ = data.get("np")
    if np_ is not None and (not isinstance(np_, int) or isinstance(np_, bool) or np_ < 1):
        raise RecipeError(f"{path}: np must be a positive integer, got {np_!r}")
    executor = str(data.get("executor_type", "default"))
    if executor not in ("default", "local", "ray"):
        raise RecipeError(f"{path}: executor_type must be default or ray, got {executor!r}")
    return Recipe(path, _opt_path(data.get("dataset_path")), _opt_path(data.get("export_path")),
                  np_, executor, specs, tuple(problems))  # fmt: skip


def _opt_path(value: Any) -> Path | None:
    return None if value is None else Path(str(value)).expanduser()
