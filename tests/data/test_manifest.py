"""Manifest IO: round trips in every format, schema errors, path resolution, file checks."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nanosora.data.manifest import (
    ManifestError,
    mix_manifests,
    parse_mix_part,
    read_manifest,
    resolve_paths,
    write_manifest,
)


def _sample() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": ["clips/a.mp4", "/abs/b.mp4", "c.mp4"],
            "text": ["a red circle moving left", "一个红色的圆向左移动", ""],
            "start": [0.0, 1.25, 0.1 + 0.2],  # 0.30000000000000004: full float precision
            "num_frames": [17, 33, 17],
            "fps": [8.0, 24.0, np.nan],
            "source": ["shapes", "youku", None],
            "source_id": ["00123", "v_abc", "7"],  # id strings that look like numbers
            "motion_score": [0.5, 1.5, 2.5],
            "keep": [True, False, True],
        }
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    df = _sample()
    path = write_manifest(df, tmp_path / "sub" / f"manifest{suffix}")
    back = read_manifest(path)
    assert list(back.columns) == list(df.columns)
    assert back["text"].tolist() == df["text"].tolist()  # Chinese and "" intact
    assert back["source_id"].tolist() == ["00123", "v_abc", "7"]
    assert back["start"].tolist() == df["start"].tolist()
    assert back["num_frames"].dtype == np.int64 and back["keep"].dtype == bool
    assert back["fps"].dtype == np.float64 and np.isnan(back.at[2, "fps"])
    assert pd.isna(back.at[2, "source"])
    # No temp files left behind by the atomic write.
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_parquet_round_trip_is_exact(tmp_path: Path) -> None:
    df = _sample()
    back = read_manifest(write_manifest(df, tmp_path / "m.parquet"))
    pd.testing.assert_frame_equal(back, df)


def test_jsonl_is_utf8_and_keeps_lists(tmp_path: Path) -> None:
    # Data-Juicer rows carry a list of videos; JSONL keeps it as a list.
    df = pd.DataFrame({"path": ["a.mp4"], "text": ["中文 <__dj__video>"], "videos": [["a.mp4"]]})
    path = write_manifest(df, tmp_path / "m.jsonl")
    assert "中文" in path.read_text(encoding="utf-8")
    assert read_manifest(path).at[0, "videos"] == ["a.mp4"]


def test_overwrite_is_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    write_manifest(_sample(), path)
    write_manifest(_sample().iloc[:1], path)
    assert len(read_manifest(path)) == 1


def test_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"unsupported manifest format '\.txt'"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(ManifestError, match="unsupported"):
        write_manifest(_sample(), tmp_path / "m.xlsx")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="m.csv"):
        read_manifest(tmp_path / "m.csv")


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,caption\na.mp4,hello\n")
    with pytest.raises(ManifestError, match=re.escape(str(path)) + r".*\['text'\]"):
        read_manifest(path)


def test_empty_path_names_row(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,text\na.mp4,hi\n,no file\n")
    with pytest.raises(ManifestError, match=r"'path'.*row 1"):
        read_manifest(path)


def test_non_string_text_names_row(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.mp4", "text": "ok"}\n{"path": "b.mp4", "text": 3}\n')
    with pytest.raises(ManifestError, match=r"'text'.*row 1: text=3"):
        read_manifest(path)
    path.write_text('{"path": "a.mp4", "text": null}\n')
    with pytest.raises(ManifestError, match=r"'text'.*row 0"):
        read_manifest(path)


def test_non_numeric_optional_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("path,text,fps\na.mp4,hi,8\nb.mp4,hi,fast\n")
    with pytest.raises(ManifestError, match=r"'fps'.*row 1: fps='fast'"):
        read_manifest(path)


def test_invalid_json_line(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "a.mp4", "text": "ok"}\n{oops\n')
    with pytest.raises(ManifestError, match="line 2"):
        read_manifest(path)


def test_write_refuses_invalid_table(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="text"):
        write_manifest(pd.DataFrame({"path": ["a.mp4"]}), tmp_path / "m.parquet")
    assert not any(tmp_path.iterdir())


def test_resolve_paths(tmp_path: Path) -> None:
    df = pd.DataFrame({"path": ["a.mp4", "sub/../b.mp4", "/abs/c.mp4"], "text": ["", "", ""]})
    resolved = resolve_paths(df, tmp_path / "data" / "manifest.parquet")
    assert resolved.tolist() == [
        str(tmp_path / "data" / "a.mp4"),
        str(tmp_path / "data" / "b.mp4"),
        "/abs/c.mp4",
    ]


def test_resolve_paths_relative_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"path": ["a.mp4"], "text": ["x"]})
    assert resolve_paths(df, "data/m.csv").tolist() == [str(tmp_path / "data" / "a.mp4")]


def test_mix_takes_first_rows_makes_paths_absolute_and_shuffles(tmp_path: Path) -> None:
    a = pd.DataFrame({"path": [f"a{i}.mp4" for i in range(5)], "text": ["a diamond"] * 5})
    b = pd.DataFrame({"path": [f"clips/b{i}.mp4" for i in range(6)], "text": ["two circles"] * 6,
                      "category": ["numeracy"] * 6})  # fmt: skip
    write_manifest(a, tmp_path / "new" / "manifest.parquet")
    write_manifest(b, tmp_path / "old" / "manifest.csv")
    parts = [parse_mix_part(str(tmp_path / "new" / "manifest.parquet")),
             parse_mix_part(f"{tmp_path / 'old' / 'manifest.csv'}:4")]  # fmt: skip
    path, counts = mix_manifests(parts, tmp_path / "mix" / "manifest.parquet", seed=3)
    mixed = read_manifest(path)
    assert counts == [5, 4] and len(mixed) == 9
    expected = {str(tmp_path / "new" / f"a{i}.mp4") for i in range(5)}
    expected |= {str(tmp_path / "old" / "clips" / f"b{i}.mp4") for i in range(4)}
    assert set(mixed.path) == expected  # the first 4 rows of b, every path absolute
    assert mixed.path.tolist() != sorted(mixed.path)  # shuffled, not concatenated
    assert mixed.category.isna().sum() == 5  # a has no category column: missing cells
    again, _ = mix_manifests(parts, tmp_path / "mix2.parquet", seed=3)
    assert read_manifest(again).path.tolist() == mixed.path.tolist()  # the seed fixes the order


def test_mix_refuses_more_rows_than_a_manifest_has(tmp_path: Path) -> None:
    a = write_manifest(pd.DataFrame({"path": ["a.mp4"], "text": ["x"]}), tmp_path / "a.jsonl")
    with pytest.raises(ManifestError, match=r"a\.jsonl: 2 rows asked, it has 1"):
        mix_manifests([parse_mix_part(f"{a}:2")], tmp_path / "out.parquet")
    with pytest.raises(ManifestError, match="at least 1"):
        parse_mix_part(f"{a}:0")
    assert parse_mix_part("C:/data/m.parquet") == (Path("C:/data/m.parquet"), None)
    assert not (tmp_path / "out.parquet").exists()
