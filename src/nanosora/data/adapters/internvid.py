"""InternVid: JSON lines of YouTube clips with timestamps, a caption and two scores.

One line per clip (InternVid-10M-FLT)::

    {"YoutubeID": "qJrOyggIB-w", "Start_timestamp": "00:07:33.689",
     "End_timestamp": "00:07:51.085", "Caption": "a screen shot of heroes of the storm ...",
     "Aesthetic_Score": 4.29296875, "UMT_Score": 0.4501953125}

Field -> column: YoutubeID -> source_id and path "<id>.mp4" (Data-Juicer's converter expects the
id already replaced by a local path such as "videos/<id>.mp4"; such a value is kept as the path
and its stem is the id); Start/End_timestamp -> start/end (seconds); Caption -> text;
Aesthetic_Score -> aesthetic_score; UMT_Score -> umt_score; any other field -> ``extra`` (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError, make_schema
from nanosora.data.adapters.formats import (
    check_span,
    check_utf8,
    iter_json_records,
    parse_time,
    youtube_url,
)

SOURCE = "internvid"
FIELDS = ("YoutubeID", "Start_timestamp", "End_timestamp", "Caption")
SCORES = {"Aesthetic_Score": "aesthetic_score", "UMT_Score": "umt_score"}


class InternVid:
    """Adapter for InternVid's JSONL (or a JSON list of the same objects)."""

    source = SOURCE

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        return make_schema(
            pa.field("clip_id", pa.string()),
            pa.field("youtube_id", pa.string()),
            pa.field("url", pa.string()),
            pa.field("aesthetic_score", pa.float64()),
            pa.field("umt_score", pa.float64()),
            pa.field("extra", pa.string()),
        )

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        try:
            for line, record in iter_json_records(file):
                try:
                    if isinstance(record, RowError):
                        raise record
                    yield {**_row(record), "_line": line}
                except RowError as e:
                    yield e.reject(file, line, json.dumps(record, ensure_ascii=False, default=str))
        except RowError as e:
            yield e.reject(file, 1)


def _row(record: dict[str, Any]) -> Row:
    for field in FIELDS:
        if not isinstance(record.get(field), str) or not record[field]:
            raise RowError(field, "missing_field", f"{field} must be a non-empty string")
    given = check_utf8(record["YoutubeID"], "YoutubeID")
    is_path = "/" in given or os.path.splitext(given)[1] != ""
    youtube_id = os.path.splitext(os.path.basename(given))[0] if is_path else given
    start = parse_time(record["Start_timestamp"], "Start_timestamp")
    end = parse_time(record["End_timestamp"], "End_timestamp")
    check_span(start, end, "End_timestamp")
    scores = {}
    for field, column in SCORES.items():
        value = record.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise RowError(field, "bad_value", f"not a number: {value!r}")
        scores[column] = None if value is None else float(value)
    rest = {k: v for k, v in record.items() if k not in FIELDS and k not in SCORES}
    clip_id = f"{youtube_id}_{start:.3f}_{end:.3f}"
    return {
        "path": given if is_path else f"{given}.mp4",
        "text": check_utf8(record["Caption"], "Caption"),
        "start": start,
        "end": end,
        "source": SOURCE,
        "source_id": youtube_id,
        "clip_id": clip_id,
        "youtube_id": youtube_id,
        "url": youtube_url(youtube_id),
        **scores,
        "extra": json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else None,
        "_key": clip_id,
    }
