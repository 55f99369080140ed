"""MSR-VTT: 10,000 clips x 20 captions, in the three layouts the community publishes.

- the official ``train_val_videodatainfo.json`` / ``test_videodatainfo.json`` (also CLIP4Clip's
  ``MSRVTT_data.json``): ``{"videos": [{"video_id", "category", "url", "start time", "end time",
  "split", "id"}], "sentences": [{"caption", "video_id", "sen_id"}]}``;
- LAVIS/BLIP caption lists: ``[{"video": "video7010.mp4", "caption": [20 strings] | "one"}]``;
- CLIP4Clip CSVs ``key,vid_key,video_id,sentence`` (the JSFusion 1k-A test list), comma- or
  semicolon-delimited;
- the Hugging Face ``AlexZigma/msr-vtt`` rows (JSONL, or a JSON list): ``video_id, caption,
  category, url, start time, end time, split, id, __index_level_0__``.

``rows="clip"`` gives one row per video with every caption in ``captions`` (``text`` = the first);
``rows="caption"`` one row per (video, caption). The standard splits are a column computed from the
video number: ``split`` = train (video0-6512), validate (6513-7009), test (7010-9999), and
``test_1k_a`` marks the 1,000 JSFusion test videos.

Field -> column: video_id -> source_id (path "<video_id>.mp4": the distributed files are already cut
clips, so start/end stay empty); "start time"/"end time" -> url_start/url_end (seconds in ``url``);
id -> video_number; sen_id -> sen_id (caption rows) / sen_ids (clip rows); key -> jsfusion_key;
vid_key -> vid_key; __index_level_0__ -> hf_index; category, url -> same; any other field ->
``extra`` (a JSON object), so nothing is dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from nanosora.data.adapters import AnnotationFile, Reject, Row, RowError, make_schema, wrong_format
from nanosora.data.adapters.formats import (
    CsvReader,
    check_field_count,
    check_utf8,
    iter_jsonl,
    load_json,
)

SOURCE = "msrvtt"
ROWS = ("clip", "caption")

# The 1,000 test videos of the JSFusion "1k-A" split (Yu et al. 2018), as listed in CLIP4Clip's
# MSRVTT_JSFUSION_test.csv; copied from minhhieu121/AIC_benchmark@8faa148 MSRVTT_JSFUSION_test.csv
# (sha256 68b87e7a...b7638), whose first 20 rows are the shared fixture.
JSFUSION_1K_A: frozenset[int] = frozenset(
    int(n)
    for n in """
7020 7021 7024 7025 7026 7027 7028 7029 7034 7035 7060 7061 7064 7110 7111 7112 7113 7114 7115
7116 7117 7118 7119 7131 7134 7135 7137 7138 7140 7141 7142 7143 7144 7145 7146 7147 7148 7149
7150 7151 7152 7153 7154 7155 7156 7157 7158 7159 7160 7162 7163 7164 7165 7166 7168 7169 7170
7171 7172 7173 7174 7175 7176 7177 7178 7179 7200 7201 7202 7203 7204 7205 7206 7207 7209 7211
7212 7213 7214 7215 7216 7217 7218 7219 7220 7222 7223 7227 7228 7229 7230 7231 7232 7233 7234
7235 7236 7237 7333 7340 7341 7342 7343 7345 7346 7347 7348 7349 7350 7351 7352 7353 7354 7355
7356 7357 7358 7359 7360 7361 7362 7363 7364 7365 7366 7367 7368 7369 7370 7371 7372 7373 7374
7375 7376 7377 7378 7410 7411 7412 7413 7414 7415 7418 7419 7431 7432 7436 7438 7444 7445 7461
7462 7464 7466 7467 7468 7469 7478 7491 7500 7501 7502 7506 7528 7542 7543 7544 7545 7546 7547
7548 7549 7552 7554 7556 7558 7559 7560 7561 7562 7563 7564 7565 7566 7567 7568 7569 7570 7571
7572 7573 7574 7575 7576 7577 7578 7579 7580 7581 7583 7586 7587 7588 7589 7590 7591 7592 7593
7594 7596 7597 7598 7599 7610 7613 7614 7615 7616 7619 7632 7649 7669 7680 7681 7682 7684 7685
7686 7687 7688 7693 7695 7698 7699 7701 7704 7710 7723 7724 7725 7726 7728 7730 7731 7732 7733
7741 7744 7747 7751 7752 7753 7754 7755 7756 7757 7763 7765 7766 7767 7768 7771 7772 7776 7780
7782 7783 7785 7786 7787 7788 7789 7790 7791 7792 7793 7794 7795 7796 7797 7798 7799 7820 7822
7823 7825 7826 7827 7828 7829 7830 7831 7832 7833 7834 7835 7836 7837 7838 7839 7843 7844 7845
7849 7854 7890 7898 7900 7902 7909 7910 7911 7912 7913 7914 7915 7916 7917 7919 7939 7946 7947
7960 7961 7962 7963 7964 7965 7966 7967 7968 7969 7970 7972 7973 7974 7976 7977 7978 7979 8010
8011 8012 8013 8014 8016 8018 8022 8025 8027 8044 8048 8049 8056 8057 8061 8067 8068 8069 8070
8071 8072 8073 8074 8075 8076 8077 8078 8079 8089 8110 8111 8116 8118 8119 8120 8121 8122 8123
8124 8125 8128 8129 8175 8240 8241 8242 8243 8244 8245 8246 8247 8248 8249 8250 8251 8252 8253
8254 8255 8256 8257 8258 8259 8260 8261 8262 8263 8264 8265 8266 8267 8268 8269 8300 8301 8302
8303 8304 8305 8306 8307 8308 8309 8310 8311 8312 8313 8314 8315 8316 8317 8318 8319 8320 8321
8322 8323 8324 8325 8326 8327 8328 8329 8330 8331 8332 8333 8334 8335 8336 8337 8339 8340 8341
8342 8343 8344 8345 8346 8347 8348 8349 8392 8416 8420 8423 8426 8440 8441 8442 8443 8444 8445
8446 8447 8450 8451 8453 8456 8457 8459 8461 8462 8463 8464 8466 8468 8469 8470 8471 8472 8473
8474 8475 8476 8477 8478 8479 8480 8481 8482 8483 8485 8486 8488 8489 8490 8491 8492 8493 8494
8495 8496 8497 8498 8499 8507 8514 8556 8572 8573 8578 8601 8604 8605 8606 8618 8620 8622 8626
8628 8650 8651 8652 8653 8654 8655 8656 8657 8660 8661 8662 8663 8664 8665 8666 8667 8668 8669
8670 8671 8672 8673 8674 8675 8676 8677 8678 8679 8680 8681 8682 8683 8684 8685 8686 8687 8688
8689 8690 8712 8721 8727 8741 8751 8752 8756 8772 8774 8780 8781 8783 8784 8786 8787 8788 8789
8790 8791 8792 8794 8796 8797 8798 8799 8800 8801 8803 8804 8805 8806 8807 8808 8810 8811 8812
8813 8814 8815 8816 8817 8818 8819 8820 8821 8822 8823 8824 8825 8826 8827 8828 8829 8830 8831
8832 8834 8835 8836 8837 8839 8851 8860 8861 8862 8863 8864 8865 8866 8867 8868 8869 8879 8895
8899 8900 8901 8902 8903 8904 8905 8906 8907 8908 8909 8910 8911 8912 8913 8914 8915 8916 8917
8918 8919 8920 8921 8922 8923 8924 8925 8926 8927 8928 8929 8930 8931 8932 8934 8935 8936 8937
8938 8945 8948 8949 8973 8974 8978 8979 8999 9010 9011 9012 9013 9014 9015 9016 9017 9018 9019
9020 9021 9022 9023 9024 9025 9026 9027 9028 9029 9030 9031 9032 9033 9034 9035 9036 9037 9038
9039 9063 9117 9119 9131 9200 9201 9202 9203 9204 9205 9206 9207 9208 9209 9220 9221 9222 9223
9224 9225 9226 9227 9228 9229 9230 9231 9232 9233 9234 9235 9236 9237 9238 9239 9240 9241 9242
9243 9244 9245 9246 9247 9248 9249 9250 9251 9252 9253 9254 9255 9256 9257 9258 9259 9277 9300
9301 9302 9303 9304 9305 9306 9307 9308 9309 9320 9321 9322 9323 9324 9325 9326 9327 9328 9329
9330 9331 9332 9333 9334 9335 9336 9337 9338 9339 9340 9341 9342 9343 9344 9345 9346 9347 9348
9349 9350 9351 9352 9353 9354 9355 9356 9357 9358 9359 9368 9400 9403 9404 9405 9406 9409 9416
9418 9419 9428 9450 9451 9452 9458 9472 9474 9489 9503 9508 9509 9510 9511 9512 9513 9514 9515
9516 9517 9518 9519 9520 9521 9522 9524 9530 9534 9535 9537 9539 9542 9545 9548 9549 9574 9575
9576 9577 9578 9579 9580 9581 9589 9600 9603 9605 9607 9609 9620 9622 9623 9625 9639 9647 9657
9677 9679 9680 9681 9682 9683 9684 9685 9686 9687 9688 9689 9690 9691 9692 9693 9694 9695 9696
9697 9698 9699 9728 9731 9734 9735 9742 9744 9745 9750 9752 9755 9770 9771 9772 9773 9774 9775
9776 9777 9778 9779 9780 9781 9782 9784 9788 9790 9791 9793 9795 9797 9798 9800 9801 9802 9803
9804 9805 9806 9807 9808 9809 9810 9811 9812 9813 9814 9815 9816 9817 9818 9819 9820 9821 9822
9823 9824 9825 9826 9827 9828 9829 9830 9831 9832 9833 9834 9835 9836 9837 9838 9839 9871 9872
9873 9878 9879 9882 9885 9901 9908 9909 9919 9957 9969 9975
""".split()
)

_VIDEO_ID = re.compile(r"video(\d+)")
_KNOWN = {
    "video_id", "video", "caption", "sentence", "category", "url", "start time", "end time",
    "split", "id", "sen_id", "key", "vid_key", "__index_level_0__",
}  # fmt: skip


def standard_split(number: int | None) -> str | None:
    """train 0-6512, validate 6513-7009, test 7010-9999 (the 6513/497/2990 split)."""
    if number is None or not 0 <= number <= 9999:
        return None
    return "train" if number <= 6512 else "validate" if number <= 7009 else "test"


class MsrVtt:
    """Adapter for MSR-VTT's official JSON, LAVIS lists, CLIP4Clip CSVs and HF rows."""

    source = SOURCE

    def __init__(self, rows: str = "clip") -> None:
        if rows not in ROWS:
            raise ValueError(f"msrvtt rows must be one of {ROWS}, got {rows!r}")
        self.per_caption = rows == "caption"

    def schema(self, files: list[AnnotationFile]) -> pa.Schema:
        """Caption rows carry caption_index/sen_id; clip rows captions/sen_ids."""
        per_row = (
            [
                pa.field("caption_index", pa.int32()),
                pa.field("sen_id", pa.int64()),
                pa.field("hf_index", pa.int64()),
            ]
            if self.per_caption
            else [
                pa.field("captions", pa.list_(pa.string())),
                pa.field("sen_ids", pa.list_(pa.int64())),
                pa.field("hf_indices", pa.list_(pa.int64())),
            ]
        )
        return make_schema(
            pa.field("clip_id", pa.string()),
            *per_row,
            pa.field("split", pa.string()),
            pa.field("test_1k_a", pa.bool_()),
            pa.field("video_number", pa.int32()),
            pa.field("category", pa.int32()),
            pa.field("url", pa.string()),
            pa.field("url_start", pa.float64()),
            pa.field("url_end", pa.float64()),
            pa.field("jsfusion_key", pa.string()),
            pa.field("vid_key", pa.string()),
            pa.field("extra", pa.string()),
        )

    def rows(self, file: AnnotationFile) -> Iterator[Row | Reject]:
        """Dispatch on the layout (suffix, then content)."""
        suffix = file.path.suffix.lower()
        if suffix in (".csv", ".tsv", ".txt"):
            yield from self._rows(file, _csv_records(file))
        elif suffix == ".jsonl":
            yield from self._rows(file, _jsonl_records(file))
        else:
            try:
                doc = load_json(file)
            except RowError as e:
                yield e.reject(file, 1)
                return
            yield from self._rows(file, _json_records(file, doc))

    def _rows(self, file: AnnotationFile, records: Iterator[Any]) -> Iterator[Row | Reject]:
        """Collect each video's captions (the files are small), then emit its rows."""
        videos: dict[str, dict[str, Any]] = {}
        for item in records:
            if isinstance(item, Reject):
                yield item
                continue
            line, record = item
            video_id = record["video_id"]
            if not isinstance(video_id, str) or not video_id:
                yield RowError("video_id", "missing_field", f"bad video_id {video_id!r}").reject(
                    file, line
                )
            elif video_id in videos and not record["_merge"]:
                first = videos[video_id]["_line"]
                reason = f"duplicate video {video_id!r} (first at record {first})"
                yield RowError("video_id", "duplicate_id", reason).reject(file, line)
            else:
                video = videos.setdefault(video_id, {**record, "captions": [], "_line": line})
                video["captions"] += record["captions"]
        for video_id, video in videos.items():
            try:
                rows = list(self._video_rows(video_id, video))
            except RowError as e:
                raw = json.dumps(video, ensure_ascii=False, default=str)
                yield e.reject(file, video["_line"], raw)
                continue
            yield from rows

    def _video_rows(self, video_id: str, video: dict[str, Any]) -> Iterator[Row]:
        m = _VIDEO_ID.fullmatch(video_id)
        number = int(m.group(1)) if m else _int(video.get("id"), "id")
        captions = [(sen, _caption(text), meta) for sen, text, meta in video["captions"]]
        if not captions:
            raise RowError("caption", "missing_field", f"no caption for {video_id}")
        base = {
            "path": video.get("path") or f"{video_id}.mp4",
            "start": None,
            "end": None,
            "source": SOURCE,
            "source_id": video_id,
            "split": standard_split(number),
            "test_1k_a": number in JSFUSION_1K_A if number is not None else None,
            "video_number": number,
            "category": _int(video.get("category"), "category"),
            "url": video.get("url"),
            "url_start": _float(video.get("start time"), "start time"),
            "url_end": _float(video.get("end time"), "end time"),
            "jsfusion_key": video.get("key"),
            "vid_key": video.get("vid_key"),
            "extra": captions[0][2].get("extra"),
            "_line": video["_line"],
        }
        if not self.per_caption:
            yield {
                **base,
                "text": captions[0][1],
                "clip_id": video_id,
                "captions": [t for _, t, _ in captions],
                "sen_ids": _all_or_none([s for s, _, _ in captions]),
                "hf_indices": _all_or_none([m.get("hf_index") for _, _, m in captions]),
                "_key": video_id,
            }
            return
        for k, (sen_id, text, meta) in enumerate(captions):
            yield {
                **base,
                "text": text,
                "clip_id": f"{video_id}#{k}",
                "caption_index": k,
                "sen_id": sen_id,
                "hf_index": meta.get("hf_index"),
                "extra": meta.get("extra"),
                "_key": f"{video_id}#{k}",
            }


def _all_or_none(values: list[Any]) -> list[Any] | None:
    """A per-caption list, or None when the layout has no such field."""
    return values if all(v is not None for v in values) else None


def _caption(text: Any) -> str:
    if not isinstance(text, str):
        raise RowError("caption", "bad_value", f"caption is not a string: {text!r}")
    return check_utf8(text, "caption")


def _int(value: Any, field: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RowError(field, "bad_value", f"not an integer: {value!r}") from None


def _float(value: Any, field: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RowError(field, "bad_value", f"not a number: {value!r}") from None


def _extra(record: dict[str, Any]) -> str | None:
    """Fields this adapter has no column for, as a JSON object (kept, never dropped)."""
    rest = {k: v for k, v in record.items() if k not in _KNOWN}
    return json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else None


# Each layout becomes a stream of (line, record) with record = {"video_id", "captions":
# [(sen_id | None, text, {per-caption fields: hf_index, extra})], "_merge": whether repeated ids add captions (caption lists) or are
# duplicates (one entry per video), the layout's own fields ...}; or a Reject.


def _csv_records(file: AnnotationFile) -> Iterator[Any]:
    with CsvReader(file) as reader:
        header = reader.header
        if "video_id" not in header or "sentence" not in header:
            found = f"header {header[:6]}"
            if header == ["video_id"]:
                found += " (a split list without captions: ingest MSRVTT_data.json instead)"
            yield wrong_format(
                file, "an MSR-VTT CLIP4Clip CSV (key,vid_key,video_id,sentence)", found
            )
            return
        for line, fields in reader:
            try:
                check_field_count(fields, header)
                cells = dict(zip(header, fields, strict=True))
                video_id = check_utf8(cells.pop("video_id"), "video_id")
                caption = cells.pop("sentence")
                meta = {"extra": _extra(cells)}
                yield line, {**cells, "video_id": video_id, "captions": [(None, caption, meta)],
                             "_merge": False}  # fmt: skip
            except RowError as e:
                yield e.reject(file, line, ";".join(fields))


def _hf_record(file: AnnotationFile, line: int, obj: dict[str, Any]) -> Any:
    if "video_id" not in obj or "caption" not in obj:
        return RowError("video_id", "missing_field", "an HF row needs video_id and caption").reject(
            file, line, json.dumps(obj, ensure_ascii=False)[:500]
        )
    caption = obj["caption"]
    captions = caption if isinstance(caption, list) else [caption]
    record = {k: v for k, v in obj.items() if k not in ("caption",)}
    hf_index = _int(obj.get("__index_level_0__"), "__index_level_0__")
    meta = {"hf_index": hf_index, "extra": _extra(obj)}
    return line, {**record, "captions": [(None, c, meta) for c in captions], "_merge": True}


def _jsonl_records(file: AnnotationFile) -> Iterator[Any]:
    for line, obj in iter_jsonl(file):
        yield obj.reject(file, line) if isinstance(obj, RowError) else _hf_record(file, line, obj)


def _json_records(file: AnnotationFile, doc: Any) -> Iterator[Any]:
    if isinstance(doc, dict) and "videos" in doc and "sentences" in doc:
        yield from _official_records(file, doc)
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict) and "video" in doc[0]:
        yield from _lavis_records(file, doc)
    elif isinstance(doc, list) and doc and isinstance(doc[0], dict) and "video_id" in doc[0]:
        for i, obj in enumerate(doc, start=1):
            yield _hf_record(file, i, obj)
    else:
        yield wrong_format(file, "MSR-VTT JSON (videodatainfo, LAVIS list or HF rows)", _shape(doc))


def _shape(doc: Any) -> str:
    if isinstance(doc, dict):
        return f"an object with keys {sorted(doc)[:6]}"
    if isinstance(doc, list):
        first = doc[0] if doc else None
        return f"a list of {len(doc)} ({type(first).__name__} {sorted(first)[:6] if isinstance(first, dict) else ''})"
    return f"a JSON {type(doc).__name__}"


def _lavis_records(file: AnnotationFile, doc: list[Any]) -> Iterator[Any]:
    for i, obj in enumerate(doc, start=1):
        caption = obj.get("caption") if isinstance(obj, dict) else None
        video = obj.get("video") if isinstance(obj, dict) else None
        if not isinstance(video, str) or not isinstance(caption, str | list):
            yield RowError(
                "video", "missing_field", "a LAVIS entry needs video and caption"
            ).reject(file, i, json.dumps(obj, ensure_ascii=False)[:500])
            continue
        captions = caption if isinstance(caption, list) else [caption]
        video_id = video.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        meta = {"extra": _extra(obj)}
        yield i, {"video_id": video_id, "path": video, "_merge": True,
                  "captions": [(None, c, meta) for c in captions]}  # fmt: skip


def _official_records(file: AnnotationFile, doc: dict[str, Any]) -> Iterator[Any]:
    """videos[i] is record i+1; its captions are the sentences that name it, in file order."""
    sentences: dict[str, list[tuple[int | None, str]]] = {}
    seen_sen: set[Any] = set()
    for j, sen in enumerate(doc["sentences"], start=1):
        if not isinstance(sen, dict) or "video_id" not in sen or "caption" not in sen:
            yield RowError(
                f"sentences[{j - 1}]", "missing_field", "needs video_id and caption"
            ).reject(file, j)
            continue
        if sen.get("sen_id") in seen_sen:
            yield RowError(
                f"sentences[{j - 1}].sen_id", "duplicate_id", f"duplicate sen_id {sen['sen_id']}"
            ).reject(file, j)
            continue
        seen_sen.add(sen.get("sen_id"))
        meta = {"extra": _extra(sen)}
        sentences.setdefault(sen["video_id"], []).append((sen.get("sen_id"), sen["caption"], meta))
    for i, video in enumerate(doc["videos"], start=1):
        if not isinstance(video, dict) or "video_id" not in video:
            yield RowError(f"videos[{i - 1}]", "missing_field", "needs video_id").reject(file, i)
            continue
        # The video's own unknown fields go with its first caption's (sentences rarely have any).
        captions = sentences.pop(video["video_id"], [])
        if captions and (extra := _extra(video)):
            captions[0] = (captions[0][0], captions[0][1], {"extra": extra})
        yield i, {**video, "captions": captions, "_merge": False}
    for video_id in sentences:
        yield RowError(
            "sentences.video_id",
            "missing_field",
            f"sentences name {video_id!r}, which is not in videos",
        ).reject(file, 1)
