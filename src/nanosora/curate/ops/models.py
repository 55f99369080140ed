"""Model-based scorers: frame-text similarity (CLIP), aesthetics, NSFW, watermark, OCR, captions.

Optional operators. Data-Juicer names a Hugging Face hub id (``hf_clip:
openai/clip-vit-base-patch32``) and downloads it; nanosora never downloads weights, so each
model parameter must be a local folder (``save_pretrained`` layout). A recipe whose model folder
is absent fails when it loads, naming the operator, the parameter and the path, before any work.

Frames are sampled as Data-Juicer's ``frame_sampling_method: uniform`` does (1 frame: the
middle; 2: first and last; more: first, last and evenly in between); ``all_keyframes`` is read
as ``uniform`` (keyframe positions depend on the encoder, not on the content). Scores of the
frames are reduced by ``reduce_mode`` (avg, max, min).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from nanosora.curate.frames import ClipRange
from nanosora.curate.ops.base import (
    Filter,
    Mapper,
    OpError,
    Row,
    RowContext,
    check_choice,
    check_range,
    range_reason,
)

REDUCE = {"avg": np.mean, "max": np.max, "min": np.min}


def require_local(op: str, param: str, value: Any) -> str:
    """``value`` as a local model folder, or OpError saying what to do."""
    if not isinstance(value, str) or not value:
        raise OpError(f"{op}: parameter {param} must name a local model folder, got {value!r}")
    path = os.path.expanduser(value)
    if not os.path.isdir(path):
        raise OpError(
            f"{op}: model weights not found at {param}={value!r}: nanosora does not download "
            f"models; save the model with save_pretrained() and set {param} to that folder"
        )
    return path


def uniform_picks(num_frames: int, frame_num: int) -> list[int]:
    """Frame indices of Data-Juicer's uniform sampling (module docstring)."""
    n = max(1, num_frames)
    if frame_num == 1:
        return [n // 2]
    return sorted(set(np.linspace(0, n - 1, frame_num).round().astype(int).tolist()))


class FramesConsumer:
    """RGB frames at the uniform picks (flipped if asked); result ``{"frames": [...]}``."""

    def __init__(self, clip: ClipRange, frame_num: int, hflip: bool = False, vflip: bool = False):
        self.picks = set(uniform_picks(clip.num_frames, frame_num))
        self.size = (clip.height, clip.width)
        self.hflip, self.vflip = hflip, vflip
        self.frames: list[np.ndarray] = []

    def want(self, index: int) -> tuple[int, int] | None:
        return self.size if index in self.picks else None

    def feed(self, index: int, t: float, frame: np.ndarray) -> None:
        rgb = frame[..., ::-1]
        rgb = rgb[:, ::-1] if self.hflip else rgb
        self.frames.append(np.ascontiguousarray(rgb[::-1] if self.vflip else rgb))

    def result(self) -> dict[str, Any]:
        return {"frames": self.frames}


@cache
def _clip_model(path: str) -> tuple[Any, Any]:
    from transformers import CLIPModel, CLIPProcessor

    return CLIPModel.from_pretrained(path).eval(), CLIPProcessor.from_pretrained(path)


@cache
def _classifier(path: str) -> tuple[Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    return (AutoModelForImageClassification.from_pretrained(path).eval(),
            AutoImageProcessor.from_pretrained(path))  # fmt: skip


@dataclass(frozen=True)
class _FrameModelFilter(Filter):
    min_score: float = 0.0
    max_score: float = 1.0
    frame_sampling_method: str = "uniform"
    frame_num: int = 3
    reduce_mode: str = "avg"
    any_or_all: str = "any"

    def _check(self, param: str) -> None:
        require_local(self.name, param, getattr(self, param))
        check_choice(self.name, "frame_sampling_method", self.frame_sampling_method,
                     ("uniform", "all_keyframes"))  # fmt: skip
        check_range(self.name, "frame_num", self.frame_num, 1)
        check_choice(self.name, "reduce_mode", self.reduce_mode, tuple(REDUCE))
        check_choice(self.name, "any_or_all", self.any_or_all, ("any", "all"))

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_num)

    def reason(self, row: Row) -> str | None:
        column = self.columns[0]
        return range_reason(column, row[column], self.min_score, self.max_score)


@dataclass(frozen=True)
class VideoFramesTextSimilarityFilter(_FrameModelFilter):
    """CLIP cosine similarity between the caption and sampled frames (``frames_text_similarity``)."""

    name = "video_frames_text_similarity_filter"
    columns = ("frames_text_similarity",)
    hf_clip: str = ""
    horizontal_flip: bool = False
    vertical_flip: bool = False

    def __post_init__(self) -> None:
        self._check("hf_clip")

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_num, self.horizontal_flip, self.vertical_flip)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        import torch

        frames = ctx.frame_stats(self)["frames"]
        model, processor = _clip_model(require_local(self.name, "hf_clip", self.hf_clip))
        inputs = processor(text=[row["text"]], images=list(frames), return_tensors="pt",
                           padding=True, truncation=True)  # fmt: skip
        with torch.no_grad():
            out = model(**inputs)
        img = torch.nn.functional.normalize(out.image_embeds, dim=-1)  # (frames, E)
        txt = torch.nn.functional.normalize(out.text_embeds, dim=-1)  # (1, E)
        sims = (img @ txt.T).squeeze(-1).numpy()
        return {"frames_text_similarity": float(REDUCE[self.reduce_mode](sims))}


@dataclass(frozen=True)
class _ClassifierFilter(_FrameModelFilter):
    """An image classifier on sampled frames; the score is one label's probability."""

    label: int = -1  # which output is the score (-1: the last; 0 for a one-output regressor)

    def _score(self, path: str, frames: list[np.ndarray]) -> float:
        import torch

        model, processor = _classifier(path)
        with torch.no_grad():
            logits = model(**processor(images=list(frames), return_tensors="pt")).logits
        scores = logits[:, 0] if logits.shape[1] == 1 else logits.softmax(-1)[:, self.label]
        return float(REDUCE[self.reduce_mode](scores.numpy()))


@dataclass(frozen=True)
class VideoAestheticsFilter(_ClassifierFilter):
    """Aesthetics regressor (a one-output image model) on sampled frames."""

    name = "video_aesthetics_filter"
    columns = ("video_frames_aesthetics_score",)
    hf_scorer_model: str = ""
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self._check("hf_scorer_model")

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        frames = ctx.frame_stats(self)["frames"]
        return {self.columns[0]: self._score(self.hf_scorer_model, frames)}


@dataclass(frozen=True)
class VideoNsfwFilter(_ClassifierFilter):
    """NSFW probability (the classifier's last label) on sampled frames; keep below max_score."""

    name = "video_nsfw_filter"
    columns = ("video_nsfw_score",)
    hf_nsfw_model: str = ""
    max_score: float = 0.5
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self._check("hf_nsfw_model")

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        frames = ctx.frame_stats(self)["frames"]
        return {self.columns[0]: self._score(self.hf_nsfw_model, frames)}


@dataclass(frozen=True)
class VideoWatermarkFilter(_ClassifierFilter):
    """Watermark probability on sampled frames; keep below ``prob_threshold``."""

    name = "video_watermark_filter"
    columns = ("video_watermark_prob",)
    hf_watermark_model: str = ""
    prob_threshold: float = 0.8
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        self._check("hf_watermark_model")
        check_range(self.name, "prob_threshold", self.prob_threshold, 0, 1)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        frames = ctx.frame_stats(self)["frames"]
        return {self.columns[0]: self._score(self.hf_watermark_model, frames)}

    def reason(self, row: Row) -> str | None:
        return range_reason(self.columns[0], row[self.columns[0]], None, self.prob_threshold)


@dataclass(frozen=True)
class VideoOcrAreaRatioFilter(Filter):
    """Share of frame area covered by detected text (EasyOCR, weights from ``model_path``)."""

    name = "video_ocr_area_ratio_filter"
    columns = ("video_ocr_area_ratio",)
    min_area_ratio: float = 0.0
    max_area_ratio: float = 1.0
    frame_sample_num: int = 3
    languages_to_detect: Any = ("ch_sim", "en")
    model_path: str = ""
    any_or_all: str = "any"

    def __post_init__(self) -> None:
        path = require_local(self.name, "model_path", self.model_path)
        check_range(self.name, "frame_sample_num", self.frame_sample_num, 1)
        try:
            import easyocr  # noqa: F401
        except ImportError:
            raise OpError(f"{self.name}: needs the easyocr package (weights in {path})") from None

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_sample_num)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        import easyocr

        frames = ctx.frame_stats(self)["frames"]
        reader = easyocr.Reader(list(self.languages_to_detect), model_storage_directory=self.model_path,
                                download_enabled=False, gpu=False)  # fmt: skip
        ratios = []
        for frame in frames:
            area = 0.0
            for box, _, _ in reader.readtext(frame):
                xs, ys = zip(*box, strict=True)
                area += (max(xs) - min(xs)) * (max(ys) - min(ys))
            ratios.append(area / (frame.shape[0] * frame.shape[1]))
        return {self.columns[0]: float(np.mean(ratios))}

    def reason(self, row: Row) -> str | None:
        value = row[self.columns[0]]
        return range_reason(self.columns[0], value, self.min_area_ratio, self.max_area_ratio)


@dataclass(frozen=True)
class VideoCaptioningFromFramesMapper(Mapper):
    """Caption the middle frame with a local image-to-text model; kept in ``generated_caption``."""

    name = "video_captioning_from_frames_mapper"
    hf_img2seq: str = ""
    frame_num: int = 1
    caption_num: int = 1
    keep_original_sample: bool = True
    max_new_tokens: int = 40

    def __post_init__(self) -> None:
        require_local(self.name, "hf_img2seq", self.hf_img2seq)
        check_range(self.name, "frame_num", self.frame_num, 1)
        check_range(self.name, "max_new_tokens", self.max_new_tokens, 1, sys.maxsize)

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_num)

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        from transformers import pipeline

        frames = ctx.frame_stats(self)["frames"]
        from PIL import Image

        captioner = pipeline("image-to-text", model=self.hf_img2seq)
        out = captioner(Image.fromarray(frames[len(frames) // 2]),
                        generate_kwargs={"max_new_tokens": self.max_new_tokens})  # fmt: skip
        return [{**row, "generated_caption": out[0]["generated_text"]}]
