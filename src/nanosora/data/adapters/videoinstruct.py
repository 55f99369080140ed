"""VideoInstruct-100K (Video-ChatGPT): question-answer pairs about ActivityNet videos.

Published as one JSON list ``[{"q": ..., "a": ..., "video_id": "v_<YouTubeID>"}, ...]`` (JSON lines
are read too). Several pairs name one video; they are grouped per video, in file order.

The dataset mixes three kinds of pairs: video summaries ("Describe the video in detail"),
description-based questions ("What colour is the man's shirt?") and creative prompts. The answers
to summary questions describe the whole video, so they become captions; ``DESCRIPTIVE`` decides
by the question's wording (a heuristic: the release has no type field). Every other pair is kept
in ``qa``. A video with no summary pair keeps ``text = ""`` (usable for VAE training; a curate
step can drop it) rather than being lost.

Field -> column: video_id -> source_id (path "<video_id>.mp4", ActivityNet's file name),
youtube_id = video_id without "v_", url; descriptive a -> text (first) / captions, their q ->
caption_questions; other (q, a) -> qa.

A plain-text list of video ids (``docs/train_video_ids.txt``) is read too: one caption-less row
per id, for download lists and VAE data.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError, make_schema
from nanosora.data.adapters.formats import (
    check_utf8,
    iter_json_records,
    youtube_url,
)

SOURCE = "videoinstruct"
ROWS = ("clip", "caption")
DESCRIPTIVE = re.compile(
    r"\b(describe|description|summari[sz]e|summary|overview|walk me through"
    r"|what (?:is|are) (?:happening|going on|shown|depicted)|what happens in"
    r"|what does the video (?:show|depict|feature|contain)"
    r"|main (?:activities|events|actions|content|focus|idea)s?)\b",
    re.IGNORECASE,
)
QA_TYPE = pa.list_(pa.struct([pa.field("q", pa.string()), pa.field("a", pa.string())]))


class VideoInstruct:
    """Adapter for VideoInstruct_Dataset.json (and its train_video_ids.txt)."""

    source = SOURCE

    def __init__(self, rows: str = "clip") -> None:
        if rows not in ROWS:
            raise ValueError(f"videoinstruct rows must be one of {ROWS}, got {rows!r}")
        self.per_caption = rows == "caption"

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        """Clip rows hold every caption; caption rows hold one and its question."""
        per_row = (
            [pa.field("caption_index", pa.int32()), pa.field("question", pa.string())]
            if self.per_caption
            else [
                pa.field("captions", pa.list_(pa.string())),
                pa.field("caption_questions", pa.list_(pa.string())),
            ]
        )
        return make_schema(
            pa.field("clip_id", pa.string()),
            pa.field("youtube_id", pa.string()),
            pa.field("url", pa.string()),
            *per_row,
            pa.field("qa", QA_TYPE),
        )

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        """Group the pairs per video, then emit the video's rows."""
        if file.path.suffix.lower() == ".txt":
            yield from _id_list_rows(file)
            return
        videos: dict[str, dict[str, Any]] = {}
        try:
            for line, record in iter_json_records(file):
                try:
                    if isinstance(record, RowError):
                        raise record
                    video_id, q, a = _pair(record)
                except RowError as e:
                    yield e.reject(file, line, repr(record)[:500])
                    continue
                video = videos.setdefault(video_id, {"_line": line, "pairs": []})
                video["pairs"].append((q, a))
        except RowError as e:  # not a JSON list at all
            yield e.reject(file, 1)
            return
        for video_id, video in videos.items():
            yield from self._video_rows(video_id, video["_line"], video["pairs"])

    def _video_rows(self, video_id: str, line: int, pairs: list[tuple[str, str]]) -> Iterator[Row]:
        youtube_id = video_id[2:] if video_id.startswith("v_") else video_id
        described = [(q, a) for q, a in pairs if DESCRIPTIVE.search(q)]
        qa = [{"q": q, "a": a} for q, a in pairs if not DESCRIPTIVE.search(q)]
        base = {
            "path": f"{video_id}.mp4",
            "start": None,
            "end": None,
            "source": SOURCE,
            "source_id": video_id,
            "clip_id": video_id,
            "youtube_id": youtube_id,
            "url": youtube_url(youtube_id),
            "qa": qa,
            "_line": line,
        }
        if not self.per_caption or not described:
            yield {
                **base,
                "text": described[0][1] if described else "",
                "captions": [a for _, a in described],
                "caption_questions": [q for q, _ in described],
                "caption_index": 0 if described else None,
                "question": described[0][0] if described else None,
                "_key": video_id,
            }
            return
        for k, (q, a) in enumerate(described):
            yield {**base, "text": a, "clip_id": f"{video_id}#{k}", "caption_index": k,
                   "question": q, "_key": f"{video_id}#{k}"}  # fmt: skip


def _pair(record: dict[str, Any]) -> tuple[str, str, str]:
    """``(video_id, q, a)`` of one record, checked."""
    values = []
    for field in ("video_id", "q", "a"):
        value = record.get(field)
        if not isinstance(value, str) or (field == "video_id" and not value):
            raise RowError(field, "missing_field", f"{field} must be a non-empty string")
        values.append(check_utf8(value, field))
    return values[0], values[1], values[2]


def _id_list_rows(file: AnnotationFile) -> Iterator[Row | Reject]:
    """``v_<YouTubeID>`` per line -> caption-less rows."""
    with file.open_text() as f:
        for line, text in enumerate(f, start=1):
            video_id = text.strip()
            if not video_id:
                continue
            try:
                check_utf8(video_id, "video_id")
            except RowError as e:
                yield e.reject(file, line, video_id)
                continue
            youtube_id = video_id[2:] if video_id.startswith("v_") else video_id
            yield {"path": f"{video_id}.mp4", "text": "", "start": None, "end": None,
                   "source": SOURCE, "source_id": video_id, "clip_id": video_id,
                   "youtube_id": youtube_id, "url": youtube_url(youtube_id), "qa": [],
                   "captions": [], "caption_questions": [], "_line": line, "_key": video_id}  # fmt: skip
