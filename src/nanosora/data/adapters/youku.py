"""Youku-mPLUG: Chinese video-text CSVs in four subsets, told apart by their columns.

=============== ===================================== ============================
subset          columns                               text
=============== ===================================== ============================
pretrain        ``video_id:FILE``, ``title``              title
classification  ``video_id:FILE``, ``title``, ``label``   title; label -> label_id
retrieval       ``clip_name:FILE``, ``caption``           caption
captioning      ``video_id:FILE``, ``golden_caption``     golden_caption (one, or a
                                                      Python/JSON list of several)
=============== ===================================== ============================

``:FILE`` cells are video paths relative to the dataset root (``videos/pretrain/<id>.flv``); they
become ``path`` and their stem ``source_id``. Text is read and written as UTF-8, untouched.
``label`` is one of the 45 Chinese category names; ``label_id`` is its index in ``LABELS``
(Youku-mPLUG's classname.json), or null for a name outside it (the row is kept). Other columns go
to ``extra`` (JSON), so nothing is dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError, make_schema, wrong_format
from nanosora.data.adapters.formats import (
    CsvReader,
    check_field_count,
    check_utf8,
    parse_literal,
)

SOURCE = "youku"
ROWS = ("clip", "caption")
SUBSETS: dict[str, tuple[str, str]] = {  # subset -> (file column, text column)
    "pretrain": ("video_id:FILE", "title"),
    "classification": ("video_id:FILE", "title"),  # pretrain's columns + label
    "retrieval": ("clip_name:FILE", "caption"),
    "captioning": ("video_id:FILE", "golden_caption"),
}

# The 45-class map of X-PLUG/Youku-mPLUG classname.json @ 9d3dd3f (sha256 e40b7ea1...cd0b6).
LABELS: dict[str, int] = {
    "翻唱": 0,
    "电视剧剪辑": 1,
    "电视剧周边（预告/杂谈）": 2,
    "财经": 3,
    "美发美妆": 4,
    "萌娃日常": 5,
    "传统文化": 6,
    "少儿动漫": 7,
    "医疗健康": 8,
    "亲子育儿": 9,
    "养生保健": 10,
    "电影周边（预告/杂谈）": 11,
    "篮球": 12,
    "日常生活": 13,
    "搞笑": 14,
    "少儿才艺": 15,
    "街舞": 16,
    "广场舞": 17,
    "学历教育": 18,
    "房产装修": 19,
    "美食制作": 20,
    "竞技体育": 21,
    "相声小品": 22,
    "MV": 23,
    "穿搭": 24,
    "科技": 25,
    "健身": 26,
    "家居装饰": 27,
    "纪录片": 28,
    "三农": 29,
    "职业职场": 30,
    "游戏": 31,
    "乐器演奏": 32,
    "综艺": 33,
    "电影剪辑": 34,
    "美容护肤": 35,
    "宠物": 36,
    "生活百科": 37,
    "旅游": 38,
    "足球": 39,
    "汽车": 40,
    "动漫": 41,
    "少儿玩具": 42,
    "科学科普": 43,
    "美食测评": 44,
}


def subset_of(header: list[str]) -> str | None:
    """Which Youku-mPLUG subset a CSV header belongs to (None: not Youku-mPLUG)."""
    if "video_id:FILE" in header and "label" in header and "title" in header:
        return "classification"
    for subset, (file_col, text_col) in SUBSETS.items():
        if file_col in header and text_col in header:
            return subset
    return None


class YoukuMplug:
    """Adapter for the Youku-mPLUG CSVs."""

    source = SOURCE

    def __init__(self, rows: str = "clip", label_map: Path | None = None) -> None:
        if rows not in ROWS:
            raise ValueError(f"youku rows must be one of {ROWS}, got {rows!r}")
        self.per_caption = rows == "caption"
        self.labels = LABELS
        if label_map is not None:
            self.labels = {
                str(k): int(v) for k, v in json.loads(label_map.read_text("utf-8")).items()
            }

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        return make_schema(
            pa.field("clip_id", pa.string()),
            pa.field("subset", pa.string()),
            pa.field("captions", pa.list_(pa.string())),
            pa.field("caption_index", pa.int32()),
            pa.field("label", pa.string()),
            pa.field("label_id", pa.int32()),
            pa.field("extra", pa.string()),
        )

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        with CsvReader(file, delimiter=",") as reader:
            subset = subset_of(reader.header)
            if subset is None:
                yield wrong_format(file, "a Youku-mPLUG CSV", f"header {reader.header[:6]}")
                return
            for line, fields in reader:
                try:
                    check_field_count(fields, reader.header)
                    cells = dict(zip(reader.header, fields, strict=True))
                    yield from self._rows(subset, cells, line)
                except RowError as e:
                    yield e.reject(file, line, ",".join(fields))

    def _rows(self, subset: str, cells: dict[str, str], line: int) -> Iterator[Row]:
        file_col, text_col = SUBSETS[subset]
        path = check_utf8(cells.pop(file_col), file_col)
        if not path:
            raise RowError(file_col, "missing_field", "empty video path")
        captions = _captions(check_utf8(cells.pop(text_col), text_col), text_col)
        label = check_utf8(cells.pop("label"), "label") if "label" in cells else None
        source_id = Path(path).stem
        base = {
            "path": path,
            "start": None,
            "end": None,
            "source": SOURCE,
            "source_id": source_id,
            "subset": subset,
            "label": label,
            "label_id": self.labels.get(label) if label is not None else None,
            "extra": json.dumps(cells, ensure_ascii=False, sort_keys=True) if cells else None,
            "_line": line,
        }
        if not self.per_caption:
            yield {**base, "text": captions[0], "clip_id": source_id, "captions": captions,
                   "caption_index": None, "_key": f"{path}\t{captions[0]}"}  # fmt: skip
            return
        for k, text in enumerate(captions):
            yield {**base, "text": text, "clip_id": f"{source_id}#{k}", "captions": None,
                   "caption_index": k, "_key": f"{path}\t{text}"}  # fmt: skip


def _captions(cell: str, field: str) -> list[str]:
    """One caption, or several when the cell is a list literal (captioning's golden_caption)."""
    text = cell.strip()
    if text.startswith("[") and text.endswith("]"):
        value = parse_literal(text, field)  # a JSON list of strings is a Python literal too
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise RowError(field, "bad_literal", f"expected a list of captions: {text[:80]!r}")
        return value
    if not text:
        raise RowError(field, "missing_field", f"empty {field}")
    return [cell]
