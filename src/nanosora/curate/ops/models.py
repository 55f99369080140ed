"""Model-based scorers: frame-text similarity (CLIP), aesthetics, NSFW, watermark, OCR, captions.

Optional operators. Data-Juicer names a Hugging Face hub id (``hf_clip:
openai/clip-vit-base-patch32``) and downloads it; nanosora never downloads weights, so each
model parameter must be a local folder (``save_pretrained`` layout). A recipe whose model folder
is absent, holds no processor, or holds the wrong kind of model (read from its ``config.json``)
fails when it loads, naming the operator, the parameter and the path, before any work.

Loaders (one per process, cached by folder): CLIP similarity takes ``CLIPModel`` +
``CLIPProcessor``; aesthetics / NSFW / watermark take ``AutoModelForImageClassification`` +
``AutoImageProcessor`` (a one-output model is read as a regressor, otherwise the probability of
label 1, as Data-Juicer reads them); captioning takes ``AutoModelForImageTextToText`` +
``AutoProcessor`` (BLIP-style). OCR runs EasyOCR's CRAFT text detector only (as Data-Juicer
does), from ``craft_mlt_25k.pth`` in ``model_path``.

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
from typing import Any, ClassVar, Literal

import numpy as np

from nanosora.curate.frames import ClipRange
from nanosora.curate.ops.base import (
    Filter,
    Mapper,
    OpError,
    Row,
    RowContext,
    check_choice,
    check_order,
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


ModelKind = Literal["clip", "classifier", "captioner"]
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")  # either: a processor


def _architectures(kind: ModelKind) -> set[str]:
    """Class names a ``config.json`` may list under ``architectures`` for ``kind``."""
    from transformers.models.auto import modeling_auto as auto

    match kind:
        case "clip":
            return {"CLIPModel"}
        case "classifier":
            table = auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES
        case "captioner":
            table = auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    names = (v if isinstance(v, (tuple, list)) else (v,) for v in table.values())
    return {n for group in names for n in group}


def require_model(op: str, param: str, value: Any, kind: ModelKind, remote: bool = False) -> Any:
    """The config of the transformers model of ``kind`` (and processor) in local folder ``value``.

    Reads ``config.json`` only (cheap, before any work), so a folder of the wrong kind (a CLIP
    folder given to a classifier) fails when the recipe loads, not on every row. With
    ``remote`` (trust_remote_code) the model's own code decides, so its class is not checked.
    """
    from transformers import AutoConfig

    path = require_local(op, param, value)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=remote)
    except (OSError, ValueError) as e:
        raise OpError(f"{op}: {param}={value!r} is not a transformers model folder: {e}") from None
    if not any(os.path.isfile(os.path.join(path, f)) for f in PROCESSOR_FILES):
        raise OpError(f"{op}: {param}={value!r} has no processor ({' or '.join(PROCESSOR_FILES)}); "
                      "save the processor with save_pretrained() into the same folder")  # fmt: skip
    found = set(config.architectures or [])
    wanted = _architectures(kind)
    if not remote and not found & wanted:
        raise OpError(f"{op}: {param}={value!r} holds a {config.model_type!r} model "
                      f"{sorted(found)}; {op} needs one of {sorted(wanted)}")  # fmt: skip
    return config


@cache
def _load(kind: ModelKind, path: str, remote: bool) -> tuple[Any, Any]:
    """(model in eval mode, processor) from a folder `require_model` accepted."""
    import transformers as tf

    match kind:
        case "clip":
            model_cls, processor_cls = tf.CLIPModel, tf.CLIPProcessor
        case "classifier":
            model_cls, processor_cls = tf.AutoModelForImageClassification, tf.AutoImageProcessor
        case "captioner":
            model_cls, processor_cls = tf.AutoModelForImageTextToText, tf.AutoProcessor
    extra = {"trust_remote_code": True} if remote else {}
    return (model_cls.from_pretrained(path, **extra).eval(),
            processor_cls.from_pretrained(path, **extra))  # fmt: skip


def load_model(op: str, param: str, path: str, kind: ModelKind, remote: bool) -> tuple[Any, Any]:
    """`_load`, with a failure naming the operator and the folder."""
    try:
        return _load(kind, path, remote)
    except (OSError, ValueError, KeyError) as e:
        raise OpError(f"{op}: cannot load the model in {param}={path!r}: {e}") from e


@dataclass(frozen=True)
class _FrameModelFilter(Filter):
    """A model scoring sampled frames; its folder is the field named ``model_param``."""

    model_param: ClassVar[str]
    model_kind: ClassVar[ModelKind]
    min_score: float = 0.0
    max_score: float = 1.0
    frame_sampling_method: str = "uniform"
    frame_num: int = 3
    reduce_mode: str = "avg"
    any_or_all: str = "any"
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check_choice(self.name, "frame_sampling_method", self.frame_sampling_method,
                     ("uniform", "all_keyframes"))  # fmt: skip
        check_range(self.name, "frame_num", self.frame_num, 1)
        check_choice(self.name, "reduce_mode", self.reduce_mode, tuple(REDUCE))
        check_choice(self.name, "any_or_all", self.any_or_all, ("any", "all"))
        check_order(self.name, "min_score", self.min_score, "max_score", self.max_score)
        folder = getattr(self, self.model_param)
        self._check_model(require_model(self.name, self.model_param, folder, self.model_kind,
                                        self.trust_remote_code))  # fmt: skip

    def _check_model(self, config: Any) -> None:
        """Parameters that depend on the model (its transformers config)."""

    def _model(self) -> tuple[Any, Any]:
        path = os.path.expanduser(getattr(self, self.model_param))  # checked when built
        return load_model(self.name, self.model_param, path, self.model_kind,
                          self.trust_remote_code)  # fmt: skip

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_num)

    def reason(self, row: Row) -> str | None:
        column = self.columns[0]
        return range_reason(column, row[column], self.min_score, self.max_score)


@dataclass(frozen=True)
class VideoFramesTextSimilarityFilter(_FrameModelFilter):
    """CLIP cosine similarity of the caption and sampled frames (``frames_text_similarity``)."""

    name = "video_frames_text_similarity_filter"
    columns = ("frames_text_similarity",)
    model_param = "hf_clip"
    model_kind = "clip"
    hf_clip: str = ""
    horizontal_flip: bool = False
    vertical_flip: bool = False

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_num, self.horizontal_flip, self.vertical_flip)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        import torch

        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"no caption to compare the frames with (text={text!r})")
        frames = ctx.frame_stats(self)["frames"]
        model, processor = self._model()
        inputs = processor(text=[text], images=list(frames), return_tensors="pt",
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

    model_kind = "classifier"
    # Which output is the score: Data-Juicer reads label 1 (``normal``/``nsfw`` in its default
    # NSFW model); a one-output model is a regressor and its value is the score.
    label: int = 1

    def _check_model(self, config: Any) -> None:
        n = config.num_labels
        if n > 1 and not -n <= self.label < n:
            raise OpError(f"{self.name}: parameter label={self.label} is out of range for a model "
                          f"with {n} labels {list(config.id2label.values())}")  # fmt: skip

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        import torch

        frames = ctx.frame_stats(self)["frames"]
        model, processor = self._model()
        with torch.no_grad():
            logits = model(**processor(images=list(frames), return_tensors="pt")).logits
        scores = logits[:, 0] if logits.shape[1] == 1 else logits.softmax(-1)[:, self.label]
        return {self.columns[0]: float(REDUCE[self.reduce_mode](scores.numpy()))}


@dataclass(frozen=True)
class VideoAestheticsFilter(_ClassifierFilter):
    """Aesthetics regressor (a one-output image model) on sampled frames."""

    name = "video_aesthetics_filter"
    columns = ("video_frames_aesthetics_score",)
    model_param = "hf_scorer_model"
    hf_scorer_model: str = ""


@dataclass(frozen=True)
class VideoNsfwFilter(_ClassifierFilter):
    """NSFW probability (the classifier's label 1) on sampled frames; keep up to max_score."""

    name = "video_nsfw_filter"
    columns = ("video_nsfw_score",)
    model_param = "hf_nsfw_model"
    hf_nsfw_model: str = ""
    max_score: float = 0.5


@dataclass(frozen=True)
class VideoWatermarkFilter(_ClassifierFilter):
    """Watermark probability (label 1) on sampled frames; keep up to ``prob_threshold``."""

    name = "video_watermark_filter"
    columns = ("video_watermark_prob",)
    model_param = "hf_watermark_model"
    hf_watermark_model: str = ""
    prob_threshold: float = 0.8

    def __post_init__(self) -> None:
        check_range(self.name, "prob_threshold", self.prob_threshold, 0, 1)
        super().__post_init__()

    def reason(self, row: Row) -> str | None:
        return range_reason(self.columns[0], row[self.columns[0]], None, self.prob_threshold)


CRAFT_WEIGHTS = "craft_mlt_25k.pth"  # EasyOCR's text detector, the only weights detection needs


@cache
def _ocr_reader(languages: tuple[str, ...], path: str) -> Any:
    import easyocr

    # recognizer=False: the area needs boxes only, so no recognition weights are read.
    return easyocr.Reader(list(languages), gpu=False, model_storage_directory=path,
                          user_network_directory=path, download_enabled=False,
                          recognizer=False, verbose=False)  # fmt: skip


def polygon_area(points: Any) -> float:
    """Area of a simple polygon ``[(x, y), ...]`` (shoelace formula)."""
    xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


@dataclass(frozen=True)
class VideoOcrAreaRatioFilter(Filter):
    """Share of frame area covered by detected text: EasyOCR's detector on sampled frames, its
    axis-aligned boxes plus its free-form quadrilaterals over the frame area, averaged over the
    frames (as Data-Juicer computes it). ``model_path`` (nanosora's addition: Data-Juicer lets
    EasyOCR download) is a folder holding ``craft_mlt_25k.pth``."""

    name = "video_ocr_area_ratio_filter"
    columns = ("video_ocr_area_ratio",)
    min_area_ratio: float = 0.0
    max_area_ratio: float = 1.0
    frame_sample_num: int = 3
    languages_to_detect: Any = ("ch_sim", "en")
    model_path: str = ""
    any_or_all: str = "any"

    def __post_init__(self) -> None:
        check_range(self.name, "min_area_ratio", self.min_area_ratio, 0, 1)
        check_range(self.name, "max_area_ratio", self.max_area_ratio, 0, 1)
        check_order(self.name, "min_area_ratio", self.min_area_ratio, "max_area_ratio",
                    self.max_area_ratio)  # fmt: skip
        check_range(self.name, "frame_sample_num", self.frame_sample_num, 1)
        check_choice(self.name, "any_or_all", self.any_or_all, ("any", "all"))
        path = require_local(self.name, "model_path", self.model_path)
        if not os.path.isfile(os.path.join(path, CRAFT_WEIGHTS)):
            raise OpError(f"{self.name}: model_path={self.model_path!r} has no {CRAFT_WEIGHTS} "
                          "(EasyOCR's text detector weights); nanosora does not download "
                          "them")  # fmt: skip
        try:
            from easyocr.config import all_lang_list
        except ImportError:
            raise OpError(f"{self.name}: needs the easyocr package (weights in {path})") from None
        unknown = sorted(set(self.languages) - set(all_lang_list))
        if unknown:
            raise OpError(f"{self.name}: languages_to_detect has unknown language(s) {unknown}")

    @property
    def languages(self) -> tuple[str, ...]:
        """``languages_to_detect`` as a tuple (Data-Juicer accepts one code as a string)."""
        langs = self.languages_to_detect
        return (langs,) if isinstance(langs, str) else tuple(langs)

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_sample_num)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        frames = ctx.frame_stats(self)["frames"]
        reader = _ocr_reader(self.languages, os.path.expanduser(self.model_path))
        ratios = []
        for frame in frames:
            boxes, quads = reader.detect(frame)  # one list of each per image
            area = sum(
                (x1 - x0) * (y1 - y0) for x0, x1, y0, y1 in boxes[0] if x1 >= x0 and y1 >= y0
            )
            area += sum(polygon_area(quad) for quad in quads[0])
            ratios.append(float(area) / (frame.shape[0] * frame.shape[1]))
        return {self.columns[0]: float(np.mean(ratios))}

    def reason(self, row: Row) -> str | None:
        value = row[self.columns[0]]
        return range_reason(self.columns[0], value, self.min_area_ratio, self.max_area_ratio)


@dataclass(frozen=True)
class VideoCaptioningFromFramesMapper(Mapper):
    """Caption sampled frames with a local image-to-text model; the frames' captions, joined by
    ". " as Data-Juicer joins them, go to ``generated_caption`` (and replace ``text`` when
    ``keep_original_sample`` is false; Data-Juicer adds a second row instead).

    Decoding is greedy, so candidates would all be the same caption: one is generated whatever
    ``caption_num`` and ``keep_candidate_mode`` say (accepted for Data-Juicer recipes), and a
    rerun after a kill writes the same caption. ``prompt`` (or the row's ``prompt_key`` column)
    is the text the caption continues, for models that take one (BLIP)."""

    name = "video_captioning_from_frames_mapper"
    hf_img2seq: str = ""
    trust_remote_code: bool = False
    caption_num: int = 1
    keep_candidate_mode: str = "random_any"
    keep_original_sample: bool = True
    prompt: str | None = None
    prompt_key: str | None = None
    frame_sampling_method: str = "uniform"
    frame_num: int = 3
    horizontal_flip: bool = False
    vertical_flip: bool = False
    max_new_tokens: int = 40

    def __post_init__(self) -> None:
        check_range(self.name, "caption_num", self.caption_num, 1)
        check_choice(self.name, "keep_candidate_mode", self.keep_candidate_mode,
                     ("random_any", "similar_one_simhash", "all"))  # fmt: skip
        check_choice(self.name, "frame_sampling_method", self.frame_sampling_method,
                     ("uniform", "all_keyframes"))  # fmt: skip
        check_range(self.name, "frame_num", self.frame_num, 1)
        check_range(self.name, "max_new_tokens", self.max_new_tokens, 1, sys.maxsize)
        require_model(self.name, "hf_img2seq", self.hf_img2seq, "captioner",
                      self.trust_remote_code)  # fmt: skip

    def consumer(self, clip: ClipRange) -> FramesConsumer:
        return FramesConsumer(clip, self.frame_num, self.horizontal_flip, self.vertical_flip)

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        import torch

        frames = ctx.frame_stats(self)["frames"]
        path = os.path.expanduser(self.hf_img2seq)  # checked when built
        model, processor = load_model(self.name, "hf_img2seq", path, "captioner",
                                      self.trust_remote_code)  # fmt: skip
        prompt = row.get(self.prompt_key) if self.prompt_key else self.prompt
        texts = [prompt] * len(frames) if isinstance(prompt, str) and prompt else None
        inputs = processor(images=list(frames), text=texts, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        captions = processor.batch_decode(ids, skip_special_tokens=True)
        row["generated_caption"] = ". ".join(c.strip() for c in captions)
        if not self.keep_original_sample:
            row["text"] = row["generated_caption"]
        return [row]
