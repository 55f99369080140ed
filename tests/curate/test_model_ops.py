"""Model scorers end to end through their real loaders, on tiny randomly initialised models of the
real architectures (CLIP, a ViT classifier, BLIP) built here and saved with ``save_pretrained``.

Nothing is downloaded: tokenizers are written from a few-token vocabulary. The numbers a random
model gives mean nothing; what is checked is the plumbing: column names and ranges, thresholds
that keep exactly what the statistic says, bad rows rejected with reasons while the run goes on,
clear errors for a folder of the wrong kind, and Data-Juicer's parameter names.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

torch = pytest.importorskip("torch")
tf = pytest.importorskip("transformers")

from nanosora.curate.ops import build_op  # noqa: E402
from nanosora.curate.ops.base import OpError, RowContext  # noqa: E402
from nanosora.curate.ops.models import CRAFT_WEIGHTS, polygon_area  # noqa: E402
from nanosora.curate.pipeline import PassSpec, RowProcessor  # noqa: E402
from nanosora.curate.recipe import OpSpec, RecipeError, load_recipe  # noqa: E402
from nanosora.curate.rejects import read_rejects  # noqa: E402
from nanosora.curate.runner import CurateConfig, main  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
GOOD = ("0000_multi", "0002_short", "0004_wide", "0005_black")
BAD = ("garbage", "truncated")
TINY = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
        "num_attention_heads": 2}  # fmt: skip
VISION = {**TINY, "image_size": 32, "patch_size": 8}
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", *"a the red ball video".split()]

# op name -> (model fixture key, model parameter, statistic column)
SCORERS = {
    "video_frames_text_similarity_filter": ("clip", "hf_clip", "frames_text_similarity"),
    "video_aesthetics_filter": ("aesthetics", "hf_scorer_model", "video_frames_aesthetics_score"),
    "video_nsfw_filter": ("nsfw", "hf_nsfw_model", "video_nsfw_score"),
    "video_watermark_filter": ("watermark", "hf_watermark_model", "video_watermark_prob"),
}


def save_clip(out: Path) -> Path:
    """A CLIPModel with a character-level CLIP BPE tokenizer (no merges)."""
    chars = string.ascii_lowercase + string.digits + ".,'!?-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    out.mkdir(parents=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = tf.CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"),
                                 model_max_length=32)  # fmt: skip
    text = {**TINY, "vocab_size": len(vocab), "max_position_embeddings": 32, "bos_token_id": 0,
            "eos_token_id": 1, "pad_token_id": 1}  # fmt: skip
    config = tf.CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16)
    tf.CLIPModel(config).save_pretrained(out)
    images = tf.CLIPImageProcessor(size={"shortest_edge": 32},
                                   crop_size={"height": 32, "width": 32})  # fmt: skip
    tf.CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def save_classifier(out: Path, labels: list[str], bias: list[float] | None = None) -> Path:
    """A ViT image classifier with ``labels``; ``bias`` (with zero weights) fixes its output."""
    config = tf.ViTConfig(**VISION, id2label=dict(enumerate(labels)),
                          label2id={n: i for i, n in enumerate(labels)})  # fmt: skip
    model = tf.ViTForImageClassification(config)
    if bias is not None:
        with torch.no_grad():
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(out)
    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


def save_captioner(out: Path, word: str) -> Path:
    """A BLIP captioner whose decoder always says ``word`` (its output bias outweighs the rest)."""
    out.mkdir(parents=True)
    (out / "vocab.txt").write_text("\n".join(WORDS) + "\n")
    # BLIP's decoder starts from [DEC], a special token of its tokenizer (skipped when decoding).
    tokenizer = tf.BertTokenizer(str(out / "vocab.txt"), model_max_length=32, bos_token="[DEC]")
    text = {**TINY, "vocab_size": len(WORDS), "encoder_hidden_size": 32,
            "max_position_embeddings": 32, "bos_token_id": WORDS.index("[DEC]"),
            "sep_token_id": WORDS.index("[SEP]"), "eos_token_id": WORDS.index("[SEP]"),
            "pad_token_id": 0}  # fmt: skip
    model = tf.BlipForConditionalGeneration(
        tf.BlipConfig(text_config=text, vision_config=VISION, projection_dim=16)
    )
    with torch.no_grad():
        model.text_decoder.cls.predictions.bias.zero_()
        model.text_decoder.cls.predictions.bias[WORDS.index(word)] = 100.0
    model.save_pretrained(out)
    images = tf.BlipImageProcessor(size={"height": 32, "width": 32})
    tf.BlipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_models")
    return {
        "clip": save_clip(root / "clip"),
        "aesthetics": save_classifier(root / "aesthetics", ["score"]),
        "nsfw": save_classifier(root / "nsfw", ["normal", "nsfw"]),
        "watermark": save_classifier(root / "watermark", ["no_watermark", "watermark"]),
        "captioner": save_captioner(root / "captioner", "ball"),
    }


@pytest.fixture
def subset(videos: Path, tmp_path: Path) -> Path:
    """4 good videos of the shared fixture and 2 broken files, by absolute path."""
    rows = [json.loads(line) for line in videos.read_text().splitlines()]
    keep = [r for r in rows if Path(r["path"]).stem in GOOD + BAD]
    for r in keep:
        r["path"] = str(videos.parent / r["path"])
    out = tmp_path / "subset.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in keep))
    return out


def curate(tmp: Path, dataset: Path, name: str, op: str, params: dict[str, Any],
           keep_all: bool = False) -> tuple[pd.DataFrame, list[dict[str, Any]]]:  # fmt: skip
    """Run a one-operator recipe in-process -> (output rows, rejects)."""
    recipe = tmp / f"{name}.yaml"
    export = tmp / name / "out.parquet"
    recipe.write_text(yaml.safe_dump({"dataset_path": str(dataset), "export_path": str(export),
                                      "np": 1, "process": [{op: params}]}))  # fmt: skip
    main(CurateConfig(recipe=recipe, progress=False, keep_all=keep_all))
    return pd.read_parquet(export), read_rejects(tmp / name / "out.rejects.jsonl")


def stem(row: dict[str, Any]) -> str:
    return Path(row["path"]).stem


def op_stats(op_name: str, params: dict[str, Any], path: Path, text: str = "a red ball") -> dict:
    op = build_op(op_name, params)
    row = {"path": str(path), "text": text}
    ctx = RowContext(row, "/")
    ctx.lookahead = [op]
    return op.compute(row, ctx)  # type: ignore[attr-defined]


@pytest.mark.parametrize("op_name", list(SCORERS))
def test_scores_and_thresholds_end_to_end(op_name: str, models: dict[str, Path], subset: Path,
                                          tmp_path: Path) -> None:  # fmt: skip
    key, param, column = SCORERS[op_name]
    base = {param: str(models[key]), "frame_sampling_method": "uniform", "frame_num": 3}
    # 1. Statistics only: one float per good video, in the statistic's range; bad files are
    #    rejected with the decoder's reason and the run goes on.
    stats, rejects = curate(tmp_path, subset, "stats", op_name, base, keep_all=True)
    assert sorted(stats["path"].map(lambda p: Path(p).stem)) == sorted(GOOD)
    values = dict(zip(stats["path"].map(lambda p: Path(p).stem), stats[column], strict=True))
    assert all(isinstance(v, float) and np.isfinite(v) for v in values.values())
    lo, hi = (-1.0, 1.0) if key == "clip" else (0.0, 1.0)
    if key != "aesthetics":  # a regressor's output is unbounded
        assert all(lo <= v <= hi for v in values.values()), values
    assert {stem(r) for r in rejects} == set(BAD)
    assert all(r["op"] in ("probe", op_name) and r["reason"] for r in rejects)
    # 2. A threshold between the scores: the kept rows are exactly those the statistic says.
    ordered = sorted(set(values.values()))
    assert len(ordered) > 1, f"the tiny model gave one score for every video: {values}"
    cut = (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2
    match op_name:
        case "video_nsfw_filter":
            params, keep = {"max_score": cut}, {k for k, v in values.items() if v <= cut}
        case "video_watermark_filter":
            params, keep = {"prob_threshold": cut}, {k for k, v in values.items() if v <= cut}
        case _:
            params = {"min_score": cut, "max_score": 1e9}
            keep = {k for k, v in values.items() if v >= cut}
    out, rejects = curate(tmp_path, subset, "cut", op_name, {**base, **params})
    assert {stem(r) for r in out.to_dict("records")} == keep
    dropped = {stem(r): r for r in rejects if r["op"] == op_name}
    assert set(dropped) == set(GOOD) - keep
    for name, r in dropped.items():
        assert r[column] == pytest.approx(values[name], abs=1e-6)  # same score, rerun
        assert r["reason"].startswith(f"{column}=")


def test_similarity_reduce_modes_and_missing_caption(models: dict[str, Path],
                                                     videos: Path) -> None:  # fmt: skip
    path = videos.parent / "videos" / "0000_multi.mp4"
    params = {"hf_clip": str(models["clip"]), "frame_num": 4}
    sims = {m: op_stats("video_frames_text_similarity_filter", {**params, "reduce_mode": m},
                        path)["frames_text_similarity"] for m in ("min", "avg", "max")}  # fmt: skip
    assert sims["min"] <= sims["avg"] <= sims["max"]
    assert sims["min"] < sims["max"], "4 different frames should not all score the same"
    # A row whose caption is empty is rejected by the operator, with the reason.
    spec = PassSpec((OpSpec("video_frames_text_similarity_filter", params),), "/", "/tmp")
    result = RowProcessor(spec)("7", {"path": str(path), "text": "  "})
    assert result["rows"] == []
    (reject,) = result["rejects"]
    assert reject["op"] == "video_frames_text_similarity_filter"
    assert "no caption" in reject["reason"]


def test_classifiers_score_label_one_and_regressor_value(tmp_path: Path, videos: Path) -> None:
    """Data-Juicer reads label 1 of the NSFW/watermark classifiers; a 1-output model's value."""
    path = videos.parent / "videos" / "0000_multi.mp4"
    sure = save_classifier(tmp_path / "sure", ["normal", "nsfw"], bias=[0.0, 12.0])
    clean = save_classifier(tmp_path / "clean", ["normal", "nsfw"], bias=[12.0, 0.0])
    nsfw = "video_nsfw_filter"
    high = op_stats(nsfw, {"hf_nsfw_model": str(sure)}, path)["video_nsfw_score"]
    low = op_stats(nsfw, {"hf_nsfw_model": str(clean)}, path)["video_nsfw_score"]
    assert high == pytest.approx(1.0, abs=1e-4) and low == pytest.approx(0.0, abs=1e-4)
    op: Any = build_op(nsfw, {"hf_nsfw_model": str(sure)})  # default max_score 0.5
    assert op.reason({"video_nsfw_score": high}) == f"video_nsfw_score={high:.6g} > 0.5"
    watermark: Any = build_op("video_watermark_filter", {"hf_watermark_model": str(sure),
                                                         "prob_threshold": 0.9})  # fmt: skip
    assert watermark.reason({"video_watermark_prob": 0.9}) is None
    assert watermark.reason({"video_watermark_prob": 0.95}) is not None
    scorer = save_classifier(tmp_path / "scorer", ["score"], bias=[0.7])
    value = op_stats("video_aesthetics_filter", {"hf_scorer_model": str(scorer)}, path)
    assert value == {"video_frames_aesthetics_score": pytest.approx(0.7, abs=1e-6)}
    with pytest.raises(OpError, match=r"label=5 is out of range .* \['normal', 'nsfw'\]"):
        build_op(nsfw, {"hf_nsfw_model": str(sure), "label": 5})


def test_captioning_mapper_end_to_end(models: dict[str, Path], subset: Path,
                                      tmp_path: Path) -> None:  # fmt: skip
    params = {"hf_img2seq": str(models["captioner"]), "frame_sampling_method": "uniform",
              "frame_num": 2, "max_new_tokens": 3, "mem_required": "20GB"}  # fmt: skip
    out, rejects = curate(tmp_path, subset, "cap", "video_captioning_from_frames_mapper", params)
    # One caption per sampled frame, joined by ". " (Data-Juicer's join); the text is kept.
    assert sorted(out["path"].map(lambda p: Path(p).stem)) == sorted(GOOD)
    assert set(out["generated_caption"]) == {"ball ball ball. ball ball ball"}
    assert (out["text"] != out["generated_caption"]).all()
    assert {stem(r) for r in rejects} == set(BAD)
    replaced, _ = curate(tmp_path, subset, "cap2", "video_captioning_from_frames_mapper",
                         {**params, "keep_original_sample": False, "frame_num": 1,
                          "prompt": "a red"})  # fmt: skip
    assert set(replaced["text"]) == {"a red ball ball ball"}
    assert (replaced["text"] == replaced["generated_caption"]).all()


@pytest.mark.parametrize(
    ("op_name", "param", "given", "needle"),
    [
        ("video_frames_text_similarity_filter", "hf_clip", "nsfw", "needs one of ['CLIPModel']"),
        ("video_nsfw_filter", "hf_nsfw_model", "clip", "holds a 'clip' model ['CLIPModel']"),
        ("video_aesthetics_filter", "hf_scorer_model", "captioner", "'blip' model"),
        ("video_watermark_filter", "hf_watermark_model", "empty", "not a transformers model"),
        ("video_captioning_from_frames_mapper", "hf_img2seq", "nsfw", "'vit' model"),
        ("video_nsfw_filter", "hf_nsfw_model", "no_processor", "has no processor"),
    ],
)
def test_wrong_kind_of_model_folder_fails_naming_op_and_path(
    op_name: str, param: str, given: str, needle: str, models: dict[str, Path], tmp_path: Path
) -> None:
    if given == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif given == "no_processor":
        folder = tmp_path / "bare"
        tf.ViTForImageClassification(tf.ViTConfig(**VISION)).save_pretrained(folder)
    else:
        folder = models[given]
    with pytest.raises(OpError) as e:
        build_op(op_name, {param: str(folder)})
    assert op_name in str(e.value) and f"{param}={str(folder)!r}" in str(e.value)
    assert needle in str(e.value)
    # The same problem stops a recipe when it loads, before any work.
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"process": [{op_name: {param: str(folder)}}]}))
    with pytest.raises(RecipeError, match=op_name):
        load_recipe(recipe)


def test_datajuicer_parameter_names_are_accepted(models: dict[str, Path], tmp_path: Path) -> None:
    # Data-Juicer's own recipes, with the hub ids replaced by local folders, build as they are.
    built = 0
    for path in sorted(FIXTURES.glob("datajuicer_*.yaml")):
        for step in yaml.safe_load(path.read_text())["process"]:
            ((name, params),) = step.items()
            if name in SCORERS:
                key, param, _ = SCORERS[name]
                build_op(name, {**params, param: str(models[key])})
                built += 1
    assert built >= 6
    # Every parameter of Data-Juicer's captioning mapper and of its OCR filter.
    build_op("video_captioning_from_frames_mapper", {
        "hf_img2seq": str(models["captioner"]), "trust_remote_code": False, "caption_num": 2,
        "keep_candidate_mode": "similar_one_simhash", "keep_original_sample": True,
        "prompt": None, "prompt_key": "prompt", "frame_sampling_method": "all_keyframes",
        "frame_num": 3, "horizontal_flip": True, "vertical_flip": False, "mem_required": "20GB",
    })  # fmt: skip
    for op_name, (key, param, _) in SCORERS.items():
        build_op(op_name, {param: str(models[key]), "trust_remote_code": False,
                           "frame_sampling_method": "all_keyframes", "frame_num": 3,
                           "reduce_mode": "max", "any_or_all": "all"})  # fmt: skip
    (tmp_path / CRAFT_WEIGHTS).write_bytes(b"")
    ocr = {"min_area_ratio": 0.0, "max_area_ratio": 0.5, "frame_sample_num": 3,
           "languages_to_detect": "en", "any_or_all": "any",
           "model_path": str(tmp_path)}  # fmt: skip
    try:
        import easyocr  # noqa: F401
    except ImportError:
        with pytest.raises(OpError, match="needs the easyocr package"):
            build_op("video_ocr_area_ratio_filter", ocr)
    else:
        op: Any = build_op("video_ocr_area_ratio_filter", ocr)
        assert op.languages == ("en",)


def test_ocr_names_the_missing_detector_weights(tmp_path: Path) -> None:
    with pytest.raises(OpError, match=f"video_ocr_area_ratio_filter.*no {CRAFT_WEIGHTS}"):
        build_op("video_ocr_area_ratio_filter", {"model_path": str(tmp_path)})
    bounds = {"model_path": str(tmp_path), "min_area_ratio": 0.6, "max_area_ratio": 0.5}
    with pytest.raises(OpError, match="min_area_ratio=0.6 is greater than max_area_ratio=0.5"):
        build_op("video_ocr_area_ratio_filter", bounds)


def test_polygon_area() -> None:
    assert polygon_area([[0, 0], [4, 0], [4, 3], [0, 3]]) == 12.0
    assert polygon_area([[1, 1], [3, 2], [2, 4]]) == pytest.approx(2.5)
