"""Youku-mPLUG ingest: four CSV subsets, Chinese text intact, the 45-class label map."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from nanosora.data.adapters.youku import LABELS
from nanosora.data.ingest import IngestConfig, main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "annotations"
CLASSNAME = FIXTURES / "youku_mplug_classname.json"

# The rows quoted in youku_mplug_rows_excerpt_from_data-juicer_youku_to_dj.py.txt, one per subset,
# written back as the CSVs they came from. The captioning row's second caption is the one the DJ
# form shows; the excerpt's raw cell is cut, so the two-caption list literal is built.
PRETRAIN = {
    "video_id:FILE": "videos/pretrain/14111Y1211b-1134b18bAE55bFE7Jbb7135YE3aY54EaB14ba7CbAa1AbACB24527A.flv",
    "title": "妈妈给宝宝听胎心，看看宝宝是怎么做的，太调皮了",
}
CLASSIFICATION = {
    "video_id:FILE": "videos/classification/14111B1211bFBCBCJYF48B55b7523C51F3-8b3a5YbCa5817aBb38a5YAC-241F71J.mp4",
    "title": "兔宝宝刚出生，为什么兔妈妈要把它们吃掉？看完涨见识了",
    "label": "宠物",
}
RETRIEVAL = {
    "clip_name:FILE": "videos/retrieval/14111B1211bA1F31-E-2YB57--C518FCEBC553abJYFa5541a31C8a57522AYJbYF4aTdfofa112.mp4",
    "caption": "身穿黑色上衣戴着头盔的女子在路上骑着摩托车四周还停放了一些车",
}
CAPTIONS = ["穿白色球服的女生高高跳起，接住了球。", "一排穿红色短袖的女生正在接受颁奖。"]
CAPTIONING = {
    "video_id:FILE": "videos/caption/14111B1211bEJB-1b3b-J3b7b8Y213BJ32-521a1EA8a53-3aBA72aA-4-2-CF1EJ8aTdfofa114.mp4",
    "golden_caption": str(CAPTIONS),
}  # fmt: skip


def write_csv(path: Path, *rows: dict) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def ingest(tmp_path: Path, *files: Path, out: str = "m.parquet", **kw: object) -> pd.DataFrame:
    path = tmp_path / out
    main(IngestConfig(dataset="youku", annotations=files, output=path, progress=False, **kw))
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)


def test_label_map_is_the_published_45_classes() -> None:
    assert LABELS == json.loads(CLASSNAME.read_text(encoding="utf-8"))
    assert len(LABELS) == 45 and sorted(LABELS.values()) == list(range(45))
    assert LABELS["宠物"] == 36 and LABELS["MV"] == 23


def test_four_subsets(tmp_path: Path) -> None:
    files = [
        write_csv(tmp_path / f"{name}.csv", row)
        for name, row in [("pretrain", PRETRAIN), ("cls", CLASSIFICATION), ("ret", RETRIEVAL),
                          ("cap", CAPTIONING)]
    ]  # fmt: skip
    df = ingest(tmp_path, *files).set_index("subset")
    assert df.loc["pretrain", "text"] == PRETRAIN["title"]
    assert df.loc["pretrain", "path"] == PRETRAIN["video_id:FILE"]
    assert df.loc["pretrain", "source_id"] == Path(PRETRAIN["video_id:FILE"]).stem
    assert (df.loc["classification", "label"], df.loc["classification", "label_id"]) == ("宠物", 36)
    assert (
        df.loc["classification", "text"] == "兔宝宝刚出生，为什么兔妈妈要把它们吃掉？看完涨见识了"
    )
    assert df.loc["retrieval", "text"] == RETRIEVAL["caption"]
    assert df.loc["captioning", "text"] == CAPTIONS[0]
    assert df.loc["captioning", "captions"].tolist() == CAPTIONS


def test_caption_rows_and_utf8_text_through_jsonl(tmp_path: Path) -> None:
    cap = write_csv(
        tmp_path / "caption_test.csv", CAPTIONING, {**CAPTIONING, "golden_caption": "单个"}
    )
    df = ingest(tmp_path, cap, out="m.jsonl", rows="caption")
    assert df["text"].tolist() == [*CAPTIONS, "单个"]
    assert df["clip_id"].str.endswith(("#0", "#1", "#0")).all()
    assert "穿白色球服" in (tmp_path / "m.jsonl").read_text(encoding="utf-8")  # not \\u-escaped


def test_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "cls.csv"
    good = write_csv(path, CLASSIFICATION).read_bytes()
    gbk = "videos/x.mp4,标题,宠物\n".encode("gbk")  # not UTF-8
    unknown = "videos/y.mp4,标题,不存在的类\n".encode()
    path.write_bytes(good + gbk + unknown + b"videos/z.mp4,only two\n")
    df = ingest(tmp_path, path)
    assert df["source_id"].tolist() == [CLASSIFICATION["video_id:FILE"][22:-4], "y"]
    assert pd.isna(df.iloc[1]["label_id"])  # an unknown class is kept, unmapped
    rejects = [json.loads(x) for x in (tmp_path / "m.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["kind"]) for r in rejects] == [(3, "non_utf8"), (5, "missing_column")]
