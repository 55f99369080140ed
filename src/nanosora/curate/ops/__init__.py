"""Curation operators, and the one place an operator name from a recipe becomes an object.

Names and parameters follow Data-Juicer where it has the operator, so its recipes run here.
Runtime knobs that Data-Juicer accepts on every operator (``num_proc``, ``mem_required``, ...)
are accepted and ignored: the engine decides parallelism for the whole recipe.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from nanosora.curate.ops import dedup, meta, models, motion, quality, split, text, transform
from nanosora.curate.ops.base import Op, OpError

# Data-Juicer's per-operator runtime options: meaningful for its executor, not for the result.
RUNTIME_KEYS = frozenset({
    "num_proc", "mem_required", "cpu_required", "gpu_required", "accelerator", "batch_size",
    "num_cpus", "num_gpus", "memory", "runtime_env", "turbo", "skip_op_error", "work_dir",
    "index_key", "text_key", "video_key", "image_key", "audio_key", "auto_op_parallelism",
})  # fmt: skip


# Every operator class; a recipe name is looked up on the classes' own ``name``.
OPERATORS: tuple[type[Op], ...] = (
    meta.VideoDurationFilter,
    meta.VideoResolutionFilter,
    meta.VideoAspectRatioFilter,
    meta.VideoFpsFilter,
    meta.VideoFramesNumFilter,
    motion.VideoMotionScoreFilter,
    split.VideoSplitBySceneMapper,
    split.VideoSplitByDurationMapper,
    split.VideoSplitByKeyFrameMapper,
    quality.VideoBlackFramesFilter,
    quality.VideoBlankFramesFilter,
    quality.VideoFrozenFramesFilter,
    quality.VideoStaticFilter,
    dedup.VideoDeduplicator,
    dedup.VideoNearDeduplicator,
    transform.VideoResizeResolutionMapper,
    transform.VideoResizeAspectRatioMapper,
    transform.VideoResizeCropMapper,
    text.TextLengthFilter,
    text.WordsNumFilter,
    text.CharacterRepetitionFilter,
    text.SpecialCharactersFilter,
    text.AlphanumericFilter,
    text.LanguageIdScoreFilter,
    text.CleanEmailMapper,
    text.CleanLinksMapper,
    text.CleanHtmlMapper,
    text.WhitespaceNormalizationMapper,
    models.VideoFramesTextSimilarityFilter,
    models.VideoAestheticsFilter,
    models.VideoNsfwFilter,
    models.VideoWatermarkFilter,
    models.VideoOcrAreaRatioFilter,
    models.VideoCaptioningFromFramesMapper,
)
ALIASES = {"ray_video_deduplicator": "video_deduplicator"}  # Data-Juicer's Redis-backed variant


def op_class(name: str) -> type[Op] | None:
    """The operator class for a recipe name, or None if nanosora does not have it."""
    name = ALIASES.get(name, name)
    return next((cls for cls in OPERATORS if cls.name == name), None)


def build_op(name: str, params: dict[str, Any] | None) -> Op:
    """Build operator ``name`` from recipe ``params``; OpError names any unknown or bad one."""
    cls = op_class(name)
    if cls is None:
        raise OpError(f"{name}: operator not available in nanosora")
    params = {k: v for k, v in (params or {}).items() if k not in RUNTIME_KEYS}
    accepted = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise OpError(f"{name}: unknown parameter(s) {unknown}; accepted: {sorted(accepted)}")
    return cls(**params)
