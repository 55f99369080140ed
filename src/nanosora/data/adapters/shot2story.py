"""Shot2Story: multi-shot YouTube clips with a caption, narration and ASR per shot, and a summary.

Annotation files (``20k_train.json``, ``134k_full_train.json``, ...) are JSON lists, one object
per multi-shot video (bytedance/Shot2Story DATA.md)::

    {"video": "LEwayCpIk20.78.mp4", "image_id": ..., "id": 0, "nvid": ...,
     "whole_caption": "summary", "whole_ASR": "...",
     "video_names": ["LEwayCpIk20.78_0_120.mp4", ...],   # shot files: <clip>_<first>_<last frame>
     "audio_captions": [...], "captions": [...], "ASR": [...]}            # one entry per shot

``rows="shot"``: one row per shot (path = the shot file, as Shot2Story's process_videos.py cuts
it; start_frame/end_frame locate it in the multi-shot video). ``rows="video"``: one row per
multi-shot video (text = whole_caption, the per-shot lists kept as lists).

The optional meta CSV (``20k_meta.csv``/``134k_meta.csv``: ``clip_id, categories, duration,
youtube_id``), given as ``meta``, adds categories and where the clip lies in its YouTube video
(url_start/url_end), so the download list can name it. Without it, the YouTube id is read from the
clip id (``<YouTubeID>.<n>``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError, make_schema
from nanosora.data.adapters.formats import (
    CsvReader,
    check_utf8,
    iter_json_records,
    parse_literal,
    parse_timestamp,
    youtube_url,
)

SOURCE = "shot2story"
ROWS = ("shot", "video")
PER_SHOT = ("video_names", "captions", "audio_captions", "ASR")
_KNOWN = {"video", "image_id", "id", "nvid", "whole_caption", "whole_ASR", *PER_SHOT}
_SHOT_FRAMES = re.compile(r"_(\d+)_(\d+)$")
_STR_LIST = pa.list_(pa.string())


class Shot2Story:
    """Adapter for Shot2Story's per-video JSON (+ optional meta CSV)."""

    source = SOURCE

    def __init__(self, rows: str = "shot", meta: Path | None = None) -> None:
        if rows not in ROWS:
            raise ValueError(f"shot2story rows must be one of {ROWS}, got {rows!r}")
        self.per_shot = rows == "shot"
        self.meta = read_meta(AnnotationFile(meta)) if meta is not None else {}

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        if self.per_shot:
            own = [
                pa.field("video", pa.string()),
                pa.field("shot_index", pa.int32()),
                pa.field("start_frame", pa.int64()),
                pa.field("end_frame", pa.int64()),
                pa.field("audio_caption", pa.string()),
                pa.field("asr", pa.string()),
                pa.field("whole_caption", pa.string()),
            ]
        else:
            own = [
                pa.field("captions", _STR_LIST),
                pa.field("shot_names", _STR_LIST),
                pa.field("shot_frames", pa.list_(pa.list_(pa.int64()))),
                pa.field("audio_captions", _STR_LIST),
                pa.field("shot_asr", _STR_LIST),
                pa.field("asr", pa.string()),
            ]
        common = [
            pa.field("clip_id", pa.string()),
            pa.field("youtube_id", pa.string()),
            pa.field("url", pa.string()),
            pa.field("url_start", pa.float64()),
            pa.field("url_end", pa.float64()),
            pa.field("categories", _STR_LIST),
            pa.field("shot2story_id", pa.int64()),
            pa.field("image_id", pa.string()),
            pa.field("nvid", pa.string()),
            pa.field("extra", pa.string()),
        ]
        return make_schema(*common[:1], *own, *common[1:])

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        try:
            for line, record in iter_json_records(file):
                try:
                    if isinstance(record, RowError):
                        raise record
                    yield from self._video_rows(record, line)
                except RowError as e:
                    yield e.reject(file, line, json.dumps(record, ensure_ascii=False, default=str))
        except RowError as e:
            yield e.reject(file, 1, "")

    def _video_rows(self, record: dict[str, Any], line: int) -> Iterator[Row]:
        shots = _shots(record)
        video = record["video"]
        clip = os.path.splitext(video)[0]
        meta = self.meta.get(clip, {})
        youtube_id = meta.get("youtube_id") or clip.rsplit(".", 1)[0]
        rest = {k: v for k, v in record.items() if k not in _KNOWN}
        base = {
            "start": None,
            "end": None,
            "source": SOURCE,
            "youtube_id": youtube_id,
            "url": youtube_url(youtube_id),
            "url_start": meta.get("url_start"),
            "url_end": meta.get("url_end"),
            "categories": meta.get("categories"),
            "shot2story_id": _optional_int(record.get("id")),
            "image_id": _optional_str(record.get("image_id")),
            "nvid": _optional_str(record.get("nvid")),
            "extra": json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else None,
            "_line": line,
            "_key": clip,
        }
        if not self.per_shot:
            yield {**base, "path": video, "text": _text(record, "whole_caption"),
                   "source_id": clip, "clip_id": clip, "asr": record.get("whole_ASR"),
                   "captions": shots["captions"], "shot_names": shots["video_names"],
                   "shot_frames": shots["frames"], "audio_captions": shots["audio_captions"],
                   "shot_asr": shots["ASR"]}  # fmt: skip
            return
        for i, name in enumerate(shots["video_names"]):
            shot_id = os.path.splitext(name)[0]
            start_frame, end_frame = shots["frames"][i] or (None, None)
            yield {**base, "path": name, "text": shots["captions"][i], "source_id": shot_id,
                   "clip_id": shot_id, "video": video, "shot_index": i,
                   "start_frame": start_frame, "end_frame": end_frame,
                   "audio_caption": _at(shots["audio_captions"], i), "asr": _at(shots["ASR"], i),
                   "whole_caption": record.get("whole_caption")}  # fmt: skip


def _shots(record: dict[str, Any]) -> dict[str, Any]:
    """The per-shot lists of a record, checked to be string lists of one length."""
    if not isinstance(record.get("video"), str) or not record["video"]:
        raise RowError("video", "missing_field", "video must be a non-empty string")
    shots: dict[str, Any] = {}
    for field in PER_SHOT:
        value = record.get(field)
        if value is None and field in ("audio_captions", "ASR"):
            shots[field] = None  # optional: not every release has narration or ASR
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RowError(field, "missing_field", f"{field} must be a list of strings")
        shots[field] = [check_utf8(v, field) for v in value]
        if len(value) != len(record["video_names"]):
            raise RowError(
                field,
                "length_mismatch",
                f"{len(value)} entries for {len(record['video_names'])} shots",
            )
    frames = [_SHOT_FRAMES.search(os.path.splitext(n)[0]) for n in shots["video_names"]]
    shots["frames"] = [[int(m.group(1)), int(m.group(2))] if m else None for m in frames]
    return shots


def _text(record: dict[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str):
        raise RowError(field, "missing_field", f"{field} must be a string")
    return check_utf8(value, field)


def _at(values: list[str] | None, i: int) -> str | None:
    return values[i] if values is not None else None


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def read_meta(file: AnnotationFile) -> dict[str, dict[str, Any]]:
    """``*_meta.csv`` -> {clip_id: {youtube_id, categories, url_start, url_end}}.

    A malformed meta row raises: the meta file is configuration, read once, and a silently
    missing entry would quietly drop the clip's download location.
    """
    meta = {}
    with CsvReader(file, delimiter=",") as reader:
        if reader.header[:4] != ["clip_id", "categories", "duration", "youtube_id"]:
            raise ValueError(f"{file.path}: not a Shot2Story meta CSV: header {reader.header}")
        for line, fields in reader:
            try:
                clip_id, categories, duration, youtube_id = fields[:4]
                span = parse_literal(duration, "duration")
                meta[clip_id] = {
                    "youtube_id": youtube_id,
                    "categories": parse_literal(categories, "categories"),
                    "url_start": parse_timestamp(span[0], "duration[0]"),
                    "url_end": parse_timestamp(span[1], "duration[1]"),
                }
            except (RowError, ValueError, IndexError, TypeError) as e:
                raise ValueError(f"{file.path}:{line}: bad meta row: {e}") from None
    return meta
