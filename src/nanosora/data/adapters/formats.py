"""Readers and cell parsers for the formats datasets publish their annotations in.

- ``CsvReader``: CSV with the delimiter sniffed from the header (MSR-VTT's CLIP4Clip lists exist
  with commas and with semicolons), 1-based line numbers of each record's first line.
- ``iter_jsonl`` / ``load_json``: JSON lines and whole-file JSON with errors naming the line.
- Timestamps ``H:MM:SS.mmm`` (Panda-70M, InternVid, Shot2Story) to float seconds.
- Python-literal list cells (Panda-70M writes ``str(list)`` into its CSV) parsed safely: a strict
  regular grammar for the shapes the datasets actually contain, which yields exactly what
  ``ast.literal_eval`` would, and ``ast.literal_eval`` for everything else. Nothing is ever
  ``eval``-ed. The fast path exists because ``literal_eval`` costs ~12 us per cell, which is most
  of the time of a 70M-clip ingest; ``LITERAL_FAST_PATH = False`` turns it off (the bench
  measures both).
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator
from typing import IO, Any

from nanosora.data.adapters import AnnotationFile, RowError

# The regex fast path for list cells (see the module docstring); False = ast.literal_eval only.
LITERAL_FAST_PATH = True
MAX_CELL_CHARS = 1 << 20  # a cell longer than this is rejected before parsing (literal_eval DoS)
_BAD_BYTES = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" turns bad bytes into


def check_utf8(value: str, field: str) -> str:
    """Return ``value`` unless it holds bytes that were not valid UTF-8 in the file."""
    if not value.isascii() and _BAD_BYTES.search(value):
        raise RowError(field, "non_utf8", "bytes that are not valid UTF-8")
    return value


def youtube_url(youtube_id: str) -> str:
    """The watch URL downloaders (yt-dlp, video2dataset) take for a YouTube id."""
    return f"https://www.youtube.com/watch?v={youtube_id}"


# ---------------------------------------------------------------------------------------------
# CSV and JSON
# ---------------------------------------------------------------------------------------------


class CsvReader:
    """Iterate a CSV file as ``(line, fields)``; the header is read on enter.

    ``delimiter=None`` picks whichever of ``,`` ``;`` and tab splits the header line into the most
    columns. Records with a wrong number of fields are still yielded: the adapter decides.
    """

    def __init__(self, file: AnnotationFile, delimiter: str | None = None) -> None:
        self.file, self.delimiter = file, delimiter
        self.header: list[str] = []
        self._f: IO[str] | None = None

    def __enter__(self) -> CsvReader:
        self._f = self.file.open_text()
        first = self._f.readline()
        if self.delimiter is None:
            self.delimiter = max(",;\t", key=first.count)
        self.header = [h.strip() for h in next(csv.reader([first], delimiter=self.delimiter), [])]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        assert self._f is not None, "use CsvReader in a with block"
        reader = csv.reader(self._f, delimiter=self.delimiter or ",")
        end_of_previous = 1  # the header was line 1
        for fields in reader:
            line, end_of_previous = end_of_previous + 1, reader.line_num + 1
            if fields:  # blank lines are not records
                yield line, fields


def check_field_count(fields: list[str], header: list[str]) -> None:
    """Raise ``RowError`` unless the record has one field per header column."""
    if len(fields) != len(header):
        missing = header[len(fields) :]
        what = f"missing {missing}" if missing else f"{len(fields) - len(header)} extra"
        raise RowError(
            "(row)", "missing_column", f"expected {len(header)} fields, got {len(fields)} ({what})"
        )


def iter_jsonl(file: AnnotationFile) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """``(line, object)`` per non-blank line, or ``(line, RowError)`` where it is not an object."""
    with file.open_text() as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError) as e:
                yield line, RowError("(line)", "bad_json", f"not valid JSON: {e}")
                continue
            if not isinstance(value, dict):
                yield line, RowError("(line)", "bad_json", "a JSON line that is not an object")
                continue
            yield line, value


def iter_json_records(file: AnnotationFile) -> Iterator[tuple[int, dict[str, Any] | RowError]]:
    """Records of a JSON list file (``.json``) or a JSON-lines file (any other suffix).

    For a JSON list the "line" is the record's 1-based position in the list. A file that is not
    a list of objects raises ``RowError`` (kind ``wrong_format``).
    """
    if file.path.suffix.lower() != ".json":
        yield from iter_jsonl(file)
        return
    doc = load_json(file)
    if not isinstance(doc, list):
        raise RowError("(file)", "wrong_format", f"expected a JSON list, got {type(doc).__name__}")
    for i, value in enumerate(doc, start=1):
        if isinstance(value, dict):
            yield i, value
        else:
            yield (
                i,
                RowError(
                    "(record)", "bad_json", f"a list entry that is not an object: {value!r:.80}"
                ),
            )


def load_json(file: AnnotationFile) -> Any:
    """Parse a whole-file JSON document; raise ``RowError`` (line 1) if it is not JSON."""
    try:
        return json.loads(file.read_text())
    except (json.JSONDecodeError, RecursionError) as e:
        raise RowError("(file)", "wrong_format", f"not valid JSON: {e}") from None


# ---------------------------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------------------------

_TIMESTAMP = re.compile(r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[.,](\d{1,9}))?")


def parse_timestamp(text: str, field: str = "timestamp") -> float:
    """``H:MM:SS.mmm`` (or ``MM:SS[.f]``) -> seconds, exactly as ``float("SSSS.mmm")`` would be.

    Seconds are assembled as an integer count of the fraction's unit and divided once, so
    ``0:01:11.905`` gives the float nearest 71.905 (adding 60 + 11.905 in floats would not).
    """
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise RowError(field, "bad_timestamp", f"not an H:MM:SS.mmm timestamp: {text!r}")
    hours, minutes, seconds, frac = m.groups()
    if int(minutes) >= 60 or int(seconds) >= 60:
        raise RowError(field, "bad_timestamp", f"minutes or seconds >= 60 in {text!r}")
    whole = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    if not frac:
        return float(whole)
    scale = 10 ** len(frac)
    return (whole * scale + int(frac)) / scale


def parse_time(value: Any, field: str) -> float:
    """A time given as seconds (number or numeric string) or as a timestamp string."""
    if isinstance(value, bool):
        raise RowError(field, "bad_timestamp", f"not a time: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and ":" in value:
        return parse_timestamp(value, field)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RowError(field, "bad_timestamp", f"not a time: {value!r}") from None


def check_span(start: float, end: float, field: str) -> None:
    """Raise unless ``0 <= start < end`` (a clip must have a positive length)."""
    if start < 0 or end <= start:
        raise RowError(field, "end_before_start", f"end {end} is not after start {start}")


# ---------------------------------------------------------------------------------------------
# Python-literal cells
# ---------------------------------------------------------------------------------------------

# A Python string literal without backslashes or newlines: its value is the text between quotes.
_STR = r"'[^'\\\n\r]*'|\"[^\"\\\n\r]*\""
_NUM = r"-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
_TS = r"'\d+:\d\d:\d\d(?:\.\d+)?'"
_STR_LIST = re.compile(rf"\[(?:(?:{_STR})(?:, (?:{_STR}))*)?\]")
_NUM_LIST = re.compile(rf"\[(?:{_NUM}(?:, {_NUM})*)?\]")
_SPAN_LIST = re.compile(rf"\[(?:\[{_TS}, {_TS}\](?:, \[{_TS}, {_TS}\])*)?\]")
_STR_ITEM, _NUM_ITEM = re.compile(_STR), re.compile(_NUM)
_TS_PARTS = re.compile(r"'(\d+):(\d\d):(\d\d)(?:\.(\d+))?'")


def parse_literal(cell: str, field: str) -> Any:
    """``ast.literal_eval`` of a cell, with failures as ``RowError`` naming the field."""
    if len(cell) > MAX_CELL_CHARS:
        raise RowError(field, "bad_literal", f"cell of {len(cell)} chars is too long")
    try:
        return ast.literal_eval(cell)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as e:
        shown = cell if len(cell) <= 80 else cell[:77] + "..."
        raise RowError(
            field, "bad_literal", f"not a Python literal ({type(e).__name__}): {shown!r}"
        ) from None


def parse_str_list(cell: str, field: str) -> list[str]:
    """A cell holding ``str(list_of_str)``."""
    if LITERAL_FAST_PATH and _STR_LIST.fullmatch(cell):
        return [m[1:-1] for m in _STR_ITEM.findall(cell)]
    value = parse_literal(cell, field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowError(field, "bad_literal", f"expected a list of strings, got {cell[:80]!r}")
    return value


def parse_float_list(cell: str, field: str) -> list[float]:
    """A cell holding ``str(list_of_numbers)``; ints become floats (they are scores)."""
    if LITERAL_FAST_PATH and _NUM_LIST.fullmatch(cell):
        return [float(v) for v in _NUM_ITEM.findall(cell)]
    value = parse_literal(cell, field)
    ok = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )
    if not ok:
        raise RowError(field, "bad_literal", f"expected a list of numbers, got {cell[:80]!r}")
    return [float(v) for v in value]


def parse_span_list(cell: str, field: str) -> list[tuple[float, float]]:
    """A cell holding ``[['H:MM:SS.mmm', 'H:MM:SS.mmm'], ...]`` -> ``[(start_s, end_s), ...]``."""
    if LITERAL_FAST_PATH and _SPAN_LIST.fullmatch(cell):
        # The grammar already checked every timestamp's shape; this is parse_timestamp inlined
        # (it is the hottest loop of a Panda-70M ingest). Minutes/seconds >= 60 take the slow
        # path, which rejects them with a message.
        times = []
        for h, m, s, frac in _TS_PARTS.findall(cell):
            if m >= "60" or s >= "60":
                break
            whole = int(h) * 3600 + int(m) * 60 + int(s)
            scale = 10 ** len(frac)
            times.append((whole * scale + int(frac or 0)) / scale)
        else:
            return list(zip(times[0::2], times[1::2], strict=True))
    return spans_from_value(parse_literal(cell, field), field)


def spans_from_value(value: Any, field: str) -> list[tuple[float, float]]:
    """A parsed list of ``[start, end]`` timestamp pairs -> float second pairs."""
    if not isinstance(value, list | tuple):
        raise RowError(field, "bad_literal", f"expected a list of [start, end] pairs: {value!r}")
    spans = []
    for i, pair in enumerate(value):
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise RowError(f"{field}[{i}]", "bad_literal", f"expected [start, end], got {pair!r}")
        spans.append((parse_time(pair[0], f"{field}[{i}]"), parse_time(pair[1], f"{field}[{i}]")))
    return spans
