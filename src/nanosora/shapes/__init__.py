"""The shapes world: generator (`world`), caption templates (`captions`), and the probe (`probe`)."""

from nanosora.shapes.captions import canonical_caption, caption, parse_prompt
from nanosora.shapes.probe import ProbeResult, adherence, probe_frames, probe_video
from nanosora.shapes.world import (
    COLORS,
    DIRECTIONS,
    FPS,
    HELD_OUT,
    NUM_FRAMES,
    SHAPES,
    SIZE,
    ClipSpec,
    eval_prompts,
    generate_dataset,
    render,
    sample_spec,
)

__all__ = [
    "COLORS",
    "DIRECTIONS",
    "FPS",
    "HELD_OUT",
    "NUM_FRAMES",
    "SHAPES",
    "SIZE",
    "ClipSpec",
    "ProbeResult",
    "adherence",
    "canonical_caption",
    "caption",
    "eval_prompts",
    "generate_dataset",
    "parse_prompt",
    "probe_frames",
    "probe_video",
    "render",
    "sample_spec",
]
