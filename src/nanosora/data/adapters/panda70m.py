"""Panda-70M: the CSVs of snap-research/Panda-70M, one row per source video, one clip per span.

Layouts (both exist in the published files; the header says which):

    videoID,url,timestamp,caption,matching_score
    videoID,url,timestamp,caption,matching_score,desirable_filtering,shot_boundary_detection

``timestamp``, ``caption``, ``matching_score`` (and the two newer columns) are Python-literal lists
written with ``str(list)``, one entry per clip: ``[['0:00:19.227', '0:00:28.278'], ...]``,
``['The speaker is ...', ...]``, ``[0.509, ...]``, ``['desirable', ...]`` and, per clip, the shot
spans inside it ``[[['0:00:00.000', '0:00:03.069']], ...]``.

Field -> manifest column (every field is kept):

    videoID                  -> source_id; path = "<videoID>.mp4" (the downloaded long video)
    url                      -> url
    timestamp[i]             -> start, end (seconds in the long video)
    caption[i]               -> text
    matching_score[i]        -> matching_score
    desirable_filtering[i]   -> desirable_filtering
    shot_boundary_detection[i] -> shot_boundaries (list of [start, end] seconds, clip-relative)
    i                        -> clip_index; clip_id = "<videoID>.<i>"
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError, make_schema, wrong_format
from nanosora.data.adapters.formats import (
    CsvReader,
    check_field_count,
    check_span,
    check_utf8,
    parse_float_list,
    parse_literal,
    parse_span_list,
    parse_str_list,
    spans_from_value,
)

SOURCE = "panda70m"
COLUMNS_5 = ("videoID", "url", "timestamp", "caption", "matching_score")
COLUMNS_7 = (*COLUMNS_5, "desirable_filtering", "shot_boundary_detection")


class Panda70M:
    """Adapter for the Panda-70M CSVs (5- and 7-column layouts)."""

    source = SOURCE

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        """The 7-column fields are included when any file has them."""
        fields = [
            pa.field("clip_id", pa.string()),
            pa.field("clip_index", pa.int32()),
            pa.field("url", pa.string()),
            pa.field("matching_score", pa.float64()),
        ]
        if any(_header(f)[: len(COLUMNS_7)] == list(COLUMNS_7) for f in files):
            fields += [
                pa.field("desirable_filtering", pa.string()),
                pa.field("shot_boundaries", pa.list_(pa.list_(pa.float64()))),
            ]
        return make_schema(*fields)

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        """One row per clip; a bad record or a bad clip is rejected on its own."""
        with CsvReader(file, delimiter=",") as reader:
            header = reader.header
            if header[: len(COLUMNS_5)] != list(COLUMNS_5):
                yield wrong_format(file, "a Panda-70M CSV", f"header {header[:7]}")
                return
            seven = header[: len(COLUMNS_7)] == list(COLUMNS_7)
            for line, fields in reader:
                try:
                    check_field_count(fields, header)
                    yield from _clips(file, line, fields, seven)
                except RowError as e:
                    yield e.reject(file, line, ",".join(fields))


def _header(file: AnnotationFile) -> list[str]:
    with CsvReader(file, delimiter=",") as reader:
        return reader.header


def _clips(
    file: AnnotationFile, line: int, fields: list[str], seven: bool
) -> Iterator[Row | Reject]:
    """Parse one source row (all cells first, so a broken record yields no partial clips)."""
    video_id = check_utf8(fields[0], "videoID")
    if not video_id:
        raise RowError("videoID", "missing_field", "empty videoID")
    url = check_utf8(fields[1], "url")
    spans = parse_span_list(fields[2], "timestamp")
    captions = parse_str_list(check_utf8(fields[3], "caption"), "caption")
    scores = parse_float_list(fields[4], "matching_score")
    columns: dict[str, list[Any]] = {"caption": captions, "matching_score": scores}
    if seven:
        columns["desirable_filtering"] = parse_str_list(fields[5], "desirable_filtering")
        columns["shot_boundary_detection"] = _shots(fields[6])
    for name, values in columns.items():
        if len(values) != len(spans):
            raise RowError(
                name, "length_mismatch", f"{len(values)} entries for {len(spans)} timestamps"
            )
    for i, (start, end) in enumerate(spans):
        try:
            check_span(start, end, f"timestamp[{i}]")
        except RowError as e:
            yield e.reject(file, line, str(fields[2]))
            continue
        row = {
            "path": f"{video_id}.mp4",
            "text": captions[i],
            "start": start,
            "end": end,
            "source": SOURCE,
            "source_id": video_id,
            "clip_id": f"{video_id}.{i}",
            "clip_index": i,
            "url": url,
            "matching_score": scores[i],
            "_line": line,
            "_key": video_id,
        }
        if seven:
            row["desirable_filtering"] = columns["desirable_filtering"][i]
            row["shot_boundaries"] = columns["shot_boundary_detection"][i]
        yield row


def _shots(cell: str) -> list[list[list[float]]]:
    """``shot_boundary_detection``: per clip, a list of [start, end] timestamp pairs."""
    value = parse_literal(cell, "shot_boundary_detection")
    if not isinstance(value, list):
        raise RowError("shot_boundary_detection", "bad_literal", "expected a list per clip")
    return [
        [list(span) for span in spans_from_value(clip, f"shot_boundary_detection[{i}]")]
        for i, clip in enumerate(value)
    ]
