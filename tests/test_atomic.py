"""atomic_path: a file or a directory appears whole or not at all."""

from pathlib import Path

import pytest

from nanosora.atomic import atomic_path


def test_a_directory_is_renamed_into_place_and_replaces_an_old_one(tmp_path: Path) -> None:
    out = tmp_path / "snap"
    with atomic_path(out) as tmp:
        (tmp / "sub").mkdir(parents=True)
        (tmp / "sub" / "f.txt").write_text("old")
        assert not out.exists()
    with atomic_path(out) as tmp:
        (tmp / "sub").mkdir(parents=True)
        (tmp / "sub" / "f.txt").write_text("new")
        assert (out / "sub" / "f.txt").read_text() == "old"  # untouched until the block ends
    assert (out / "sub" / "f.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["snap"]


def test_a_failed_block_leaves_neither_a_directory_nor_a_temporary(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "snap") as tmp:
        (tmp / "half").mkdir(parents=True)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
