"""Operators: parity with the reference computations, statistics, cleaners, deduplication."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from nanosora.curate.ops import build_op
from nanosora.curate.ops.base import RowContext
from nanosora.curate.ops.motion import FARNEBACK, resized_dimensions
from nanosora.curate.ops.text import char_rep_ratio, words
from nanosora.curate.pipeline import PassSpec, RowProcessor
from nanosora.curate.recipe import OpSpec
from nanosora.video.io import read_video, write_video


def datajuicer_motion_score(path: str, sampling_fps: float = 2.0) -> float:
    """Data-Juicer 1.6.1's ``_compute_motion_scores_from_video`` (OpenCV reads + seeks)."""
    cap = cv2.VideoCapture(path)
    fps = cap.get(cv2.CAP_PROP_FPS)
    step = round(fps / min(sampling_fps, fps))
    step = max(min(step, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) - 1), 1)
    prev, scores, count = None, [], 0
    while cap.isOpened():
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if prev is not None:
            flow = cv2.calcOpticalFlowFarneback(prev, gray, None, **FARNEBACK)
            scores.append(float(np.mean(cv2.cartToPolar(flow[..., 0], flow[..., 1])[0])))
        prev = gray
        count += step
        cap.set(cv2.CAP_PROP_POS_FRAMES, count)
    cap.release()
    return float(np.mean(scores or [-1]))


def stats_of(op_name: str, params: dict, path: Path) -> dict:
    op = build_op(op_name, params)
    row = {"path": str(path), "text": "x"}
    ctx = RowContext(row, "/")
    ctx.lookahead = [op]
    return op.compute(row, ctx)  # type: ignore[attr-defined]


def test_motion_score_matches_datajuicer_reference(videos: Path) -> None:
    path = videos.parent / "videos" / "0000_multi.mp4"
    ours = stats_of("video_motion_score_filter", {"sampling_fps": 2}, path)["motion_score"]
    assert ours > 0.25
    assert ours == pytest.approx(datajuicer_motion_score(str(path)), rel=0.02)


def test_black_video_has_zero_motion_and_all_black_frames(videos: Path) -> None:
    path = videos.parent / "videos" / "0005_black.mp4"
    assert stats_of("video_motion_score_filter", {}, path)["motion_score"] == 0.0
    assert stats_of("video_black_frames_filter", {}, path) == {"black_ratio": 1.0}
    assert stats_of("video_frozen_frames_filter", {}, path) == {"frozen_ratio": 1.0}
    assert stats_of("video_static_filter", {}, path)["static_score"] == 0.0
    moving = videos.parent / "videos" / "0000_multi.mp4"
    assert stats_of("video_black_frames_filter", {}, moving) == {"black_ratio": 0.0}
    assert stats_of("video_static_filter", {}, moving)["static_score"] > 1.0


def test_scene_split_matches_pyscenedetect(videos: Path) -> None:
    from scenedetect import ContentDetector, detect

    path = videos.parent / "videos" / "0001_multi.mp4"
    ref = detect(str(path), ContentDetector(27.0, 15), start_in_scene=True)
    ref_frames = [(a.frame_num, b.frame_num) for a, b in ref]
    op = build_op("video_split_by_scene_mapper", {"threshold": 27.0, "min_scene_len": 15})
    row = {"path": str(path), "text": "x"}
    ctx = RowContext(row, "/")
    pieces = op.map(row, ctx)  # type: ignore[attr-defined]
    ours = [(round(p["start"] * 24), round(p["end"] * 24)) for p in pieces]
    assert len(ref_frames) >= 2, "the synthetic video has real cuts"
    assert ours == ref_frames
    # Cuts fall on the true scene boundaries (every 51 frames).
    assert all(a % 51 == 0 for a, _ in ours)
    assert sum(p["num_frames"] for p in pieces) == 153


def test_split_by_duration_pieces() -> None:
    op = build_op("video_split_by_duration_mapper", {"split_duration": 2,
                                                     "keep_original_sample": False})  # fmt: skip
    assert op.name == "video_split_by_duration_mapper"


def test_resized_dimensions_follow_datajuicer() -> None:
    assert resized_dimensions(720, 1280, None, None, 1) == (720, 1280)
    assert resized_dimensions(720, 1280, 360, None, 1) == (360, 640)
    assert resized_dimensions(1280, 720, 360, None, 1) == (640, 360)
    assert resized_dimensions(720, 1280, 360, 500, 1) == (281, 500)
    assert resized_dimensions(720, 1280, 361, None, 8) == (360, 640)


def test_text_statistics() -> None:
    assert words("A red circle, moving left!\n--") == ["A", "red", "circle", "moving", "left"]
    assert char_rep_ratio("abc", 10) == 0.0
    assert char_rep_ratio("ab" * 20, 2) == pytest.approx(20 / 39)  # top 1 of 2 distinct
    row = {"text": "a b c 1 2 3 !!!"}
    special = build_op("special_characters_filter", {"max_ratio": 0.25})
    stats = special.compute(row, None)  # type: ignore[attr-defined,arg-type]
    assert stats["special_char_ratio"] == pytest.approx(12 / 15)
    assert special.reason({**row, **stats}) is not None  # type: ignore[attr-defined]


def test_language_id() -> None:
    op = build_op("language_id_score_filter", {"lang": "en", "min_score": 0.2})
    en = {"text": "a red circle moving to the left on a black background"}
    zh = {"text": "一个红色的圆圈向左移动"}
    en.update(op.compute(en, None))  # type: ignore[attr-defined,arg-type]
    zh.update(op.compute(zh, None))  # type: ignore[attr-defined,arg-type]
    assert en["lang"] == "en" and op.reason(en) is None  # type: ignore[attr-defined]
    assert zh["lang"] == "zh" and "lang=zh" in op.reason(zh)  # type: ignore[attr-defined]


def test_cleaners_keep_the_raw_caption() -> None:
    proc = RowProcessor(PassSpec((OpSpec("clean_links_mapper"), OpSpec("clean_email_mapper"),
                                  OpSpec("whitespace_normalization_mapper")), "/", "/tmp"))  # fmt: skip
    text = "a cat  see https://x.io/a?b=1 or mail me@x.org  "
    out = proc("0", {"path": "v.mp4", "text": text})["rows"][0]
    assert out["text"] == "a cat see or mail"
    assert out["raw_text"] == text


def test_exact_and_near_duplicates(videos: Path, tmp_path: Path) -> None:
    src = videos.parent / "videos" / "0000_multi.mp4"
    shutil.copy(src, tmp_path / "copy.mp4")
    # A re-encode at another quality: different bytes, same content.
    write_video(tmp_path / "reenc.mp4", read_video(src), fps=24, crf=35)
    other = videos.parent / "videos" / "0001_multi.mp4"
    paths = [str(src), str(tmp_path / "copy.mp4"), str(tmp_path / "reenc.mp4"), str(other)]
    for name, dropped in (("video_deduplicator", {1}), ("video_near_deduplicator", {1, 2})):
        proc = RowProcessor(PassSpec((OpSpec(name),), "/", str(tmp_path)))
        rows = [proc(str(i), {"path": p, "text": "t"})["rows"][0] for i, p in enumerate(paths)]
        drops = proc.ops[0].drop(rows)  # type: ignore[attr-defined]
        assert set(drops) == dropped, name
        assert all("of row 0" in why for why in drops.values())


def test_resize_crop_writes_target_size(videos: Path, tmp_path: Path) -> None:
    proc = RowProcessor(PassSpec((OpSpec("video_resize_crop_mapper", {"height": 64, "width": 96}),),
                                 str(videos.parent), str(tmp_path)))  # fmt: skip
    out = proc("7", {"path": "videos/0004_wide.mp4", "text": "t", "start": 1.0, "end": 2.0})
    (row,) = out["rows"]
    assert os.path.isfile(row["path"]) and row["source_path"] == "videos/0004_wide.mp4"
    frames = read_video(row["path"])
    assert frames.shape[1:3] == (64, 96) and len(frames) == 24
