"""`nanosora clips`: cut a manifest's clips out of long local videos, resumably.

Each row with ``start``/``end`` becomes a file holding exactly the frames whose timestamps ``t``
(seconds from the stream's start, as ``nanosora.video.io`` reads them) satisfy
``start <= t < end``:

- **stream copy** when that set of frames is a run of packets, contiguous in decode order, that
  begins with a keyframe: the packets are re-muxed untouched (fast, lossless). This holds when
  ``start`` falls on a keyframe and either ``end`` falls on one too or the codec does not reorder
  frames (no B-frames) -- checked on the packets themselves, not guessed from flags;
- **re-encode** otherwise (libx264, ``crf``): decode from the keyframe before ``start``, keep the
  frames in range, encode them at the source's frame rate.

Rows sharing a source video are cut from one demux pass over it; rows with the same
``(path, start, end)`` (one clip, several captions) share one file. Only the video stream is kept
(training never reads audio). Rows without ``start``/``end`` are already clips and pass through.

Resumable: a clip is written to a temp file and renamed, then recorded in ``clips.done.jsonl``; a
rerun reuses every recorded clip whose file still exists. A row that cannot be cut (missing or
broken source, range outside the video) goes to ``<manifest>.rejects.jsonl`` with its row index
and reason; the run continues.

The new manifest keeps every input column; ``path`` points at the clip (relative to the new
manifest), ``start``/``end`` are emptied (the clip is the whole file), and ``source_path``,
``source_start``, ``source_end``, ``num_frames``, ``fps``, ``height``, ``width``,
``aspect_ratio`` (H/W), ``duration``, ``codec`` and ``cut`` ("copy", "reencode" or "none") are set.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, Literal

import av
import numpy as np
import pandas as pd

from nanosora.atomic import atomic_path
from nanosora.config import ConfigError, doc
from nanosora.data.manifest import read_manifest, resolve_paths, write_manifest

_EPS = 1e-6  # same slack as nanosora.video.io for comparing frame times with user times
_SAFE = re.compile(r"[^A-Za-z0-9._#=+-]+")
DONE_LOG = "clips.done.jsonl"


@dataclass(frozen=True)
class ClipsConfig:
    """One clip-cutting run."""

    manifest: Path = doc(Path("manifest.parquet"), "input manifest with start/end per row")
    out_dir: Path = doc(Path("clips"), "folder for the clip files (and the new manifest)")
    output: Path | None = doc(None, "new manifest; default <out_dir>/manifest.parquet")
    mode: Literal["auto", "copy", "reencode"] = doc(
        "auto", "auto: copy where frame-exact, else re-encode; or force one (copy may then fail)"
    )
    crf: int = doc(18, "libx264 quality of re-encoded clips (lower = better)")
    progress: bool = doc(True, "show a progress bar")

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "copy", "reencode"):
            raise ConfigError(f"clips mode must be auto, copy or reencode, got {self.mode!r}")
        if not 0 <= self.crf <= 51:
            raise ConfigError(f"crf must be in [0, 51], got {self.crf}")

    @property
    def manifest_out(self) -> Path:
        return self.output if self.output is not None else self.out_dir / "manifest.parquet"


class ClipError(RuntimeError):
    """A clip that cannot be cut (the row is rejected, the run goes on)."""


# ---------------------------------------------------------------------------------------------
# Packets and the copy test
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PacketIndex:
    """The video packets of a file in decode order: times (s from stream start) and keyframes."""

    pts: np.ndarray  # int64, stream time base
    dts: np.ndarray
    time: np.ndarray  # float64 seconds, from pts
    key: np.ndarray  # bool
    fps: float

    @classmethod
    def scan(cls, path: str, until: float) -> PacketIndex:
        """Demux (no decoding) packets until one starts past ``until`` + 1 s of reorder slack."""
        pts, dts, key = [], [], []
        with av.open(path) as container:
            stream = container.streams.video[0]
            tb, origin = stream.time_base, stream.start_time or 0
            fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                pts.append(packet.pts)
                dts.append(packet.dts if packet.dts is not None else packet.pts)
                key.append(packet.is_keyframe)
                if float((dts[-1] - origin) * tb) > until + 1.0:
                    break
        p = np.asarray(pts, dtype=np.int64)
        seconds = (p - origin).astype(np.float64) * float(tb)
        return cls(p, np.asarray(dts, dtype=np.int64), seconds, np.asarray(key, bool), fps)

    def select(self, start: float, end: float) -> np.ndarray:
        """Decode-order indices of the frames with ``start <= t < end``."""
        return np.flatnonzero((self.time >= start - _EPS) & (self.time < end - _EPS))

    def copyable(self, chosen: np.ndarray) -> bool:
        """True if ``chosen`` is a decode-order run that starts with a keyframe.

        Then no chosen frame can reference a frame outside the run: the run starts at a sync
        point, and a frame after ``end`` that a chosen B-frame depends on would sit inside it.
        """
        if chosen.size == 0:
            return False
        contiguous = chosen[-1] - chosen[0] + 1 == chosen.size
        first_shown = chosen[np.argmin(self.pts[chosen])]
        return bool(contiguous and self.key[chosen[0]] and first_shown == chosen[0])


# ---------------------------------------------------------------------------------------------
# Cutting one clip
# ---------------------------------------------------------------------------------------------


def copy_clip(src: str, dst: Path, index: PacketIndex, chosen: np.ndarray) -> dict[str, Any]:
    """Re-mux the chosen packets, shifted so the first shown frame is at time 0."""
    wanted = set(index.pts[chosen].tolist())
    last_dts = int(index.dts[chosen[-1]])
    shift = int(index.pts[chosen].min())
    with atomic_path(dst) as tmp, av.open(src) as inp, av.open(str(tmp), "w") as out:
        stream = inp.streams.video[0]
        target = out.add_stream_from_template(stream)
        inp.seek(shift, stream=stream, backward=True, any_frame=False)
        for packet in inp.demux(stream):
            if packet.dts is not None and packet.dts > last_dts:
                break
            if packet.pts is None or packet.pts not in wanted:
                continue
            packet.pts -= shift
            packet.dts = (packet.dts if packet.dts is not None else packet.pts + shift) - shift
            packet.stream = target
            out.mux(packet)
        width, height, codec = (
            stream.codec_context.width,
            stream.codec_context.height,
            stream.codec_context.name,
        )
    return {"num_frames": int(chosen.size), "fps": index.fps, "width": width, "height": height,
            "codec": codec, "cut": "copy"}  # fmt: skip


def reencode_clip(src: str, dst: Path, start: float, end: float, crf: int) -> dict[str, Any]:
    """Decode the frames in ``[start, end)`` and encode them (libx264, source frame rate)."""
    count = 0
    with atomic_path(dst) as tmp, av.open(src) as inp, av.open(str(tmp), "w") as out:
        stream = inp.streams.video[0]
        stream.thread_type = "AUTO"
        rate = Fraction(stream.average_rate or stream.guessed_rate or 25).limit_denominator(1001)
        tb, origin = stream.time_base, stream.start_time or 0
        width = stream.codec_context.width // 2 * 2  # yuv420p needs even sizes
        height = stream.codec_context.height // 2 * 2
        enc = out.add_stream("libx264", rate=rate)
        enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
        enc.options = {"crf": str(crf)}
        if start > 0:
            inp.seek(origin + int(start / tb), stream=stream, backward=True, any_frame=False)
        for frame in inp.decode(stream):
            t = float((frame.pts - origin) * tb)
            if t < start - _EPS:
                continue
            if t >= end - _EPS:
                break
            frame = frame.reformat(width=width, height=height, format="yuv420p")
            frame.pts, frame.time_base = count, Fraction(1) / rate
            out.mux(enc.encode(frame))
            count += 1
        out.mux(enc.encode(None))
    if count == 0:
        dst.unlink(missing_ok=True)
        raise ClipError(f"no frames in [{start}, {end})")
    return {"num_frames": count, "fps": float(rate), "width": width, "height": height,
            "codec": "h264", "cut": "reencode"}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One clip file to produce: a source range, its file name, and the rows that use it."""

    key: str  # "<source>|<start>|<end>": the done log's key
    source: str
    start: float
    end: float
    name: str  # file name without suffix
    rows: list[int]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def plan_jobs(df: pd.DataFrame, sources: pd.Series) -> tuple[dict[str, Job], list[int]]:
    """Jobs keyed by source range (rows with one range share a job) and pass-through rows."""
    jobs: dict[str, Job] = {}
    names: set[str] = set()
    passthrough = []
    has_range = "start" in df.columns and "end" in df.columns
    clip_ids = df["clip_id"] if "clip_id" in df.columns else None
    for i in range(len(df)):
        start = df["start"].iat[i] if has_range else None
        end = df["end"].iat[i] if has_range else None
        if _missing(start) or _missing(end):
            passthrough.append(i)
            continue
        key = f"{sources.iat[i]}|{float(start)!r}|{float(end)!r}"
        if key in jobs:
            jobs[key].rows.append(i)
            continue
        clip_id = clip_ids.iat[i] if clip_ids is not None else None
        stem = Path(sources.iat[i]).stem
        name = _SAFE.sub(
            "_", str(clip_id) if not _missing(clip_id) else f"{stem}_{start:.3f}-{end:.3f}"
        )
        if name in names:  # two ranges claim one id: keep both, told apart by the range's hash
            name = f"{name}.{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        names.add(name)
        jobs[key] = Job(key, sources.iat[i], float(start), float(end), name, [i])
    return jobs, passthrough


def cut_source(source: str, jobs: list[Job], cfg: ClipsConfig) -> Iterator[tuple[Job, Any]]:
    """Cut every job of one source video; yields ``(job, result dict or error message)``."""
    if not os.path.isfile(source):
        for job in jobs:
            yield job, f"source video not found: {source}"
        return
    index = None
    if cfg.mode != "reencode":
        try:
            index = PacketIndex.scan(source, until=max(j.end for j in jobs))
        except (av.FFmpegError, IndexError, OSError) as e:
            for job in jobs:
                yield job, f"cannot read {source}: {e}"
            return
    for job in jobs:
        try:
            yield job, _cut(job, index, cfg)
        except (ClipError, av.FFmpegError, OSError, ValueError) as e:
            yield job, f"{type(e).__name__}: {e}"


def _cut(job: Job, index: PacketIndex | None, cfg: ClipsConfig) -> dict[str, Any]:
    if job.start < 0 or job.end <= job.start:
        raise ClipError(f"empty or negative range [{job.start}, {job.end})")
    if index is not None:
        chosen = index.select(job.start, job.end)
        if chosen.size == 0:
            raise ClipError(
                f"no frames in [{job.start}, {job.end}) (video ends at {index.time.max():.3f} s)"
            )
        if index.copyable(chosen):
            suffix = Path(job.source).suffix.lower() or ".mkv"
            result = copy_clip(job.source, cfg.out_dir / f"{job.name}{suffix}", index, chosen)
            return {**result, "file": f"{job.name}{suffix}"}
        if cfg.mode == "copy":
            raise ClipError("range is not keyframe-aligned, and mode=copy forbids re-encoding")
    result = reencode_clip(job.source, cfg.out_dir / f"{job.name}.mp4", job.start, job.end, cfg.crf)
    return {**result, "file": f"{job.name}.mp4"}


def _load_done(path: Path, out_dir: Path) -> dict[str, dict[str, Any]]:
    """Finished clips of earlier runs whose files still exist."""
    done = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if (out_dir / record["file"]).is_file():
                done[record["key"]] = record
    return done


def build_manifest(
    df: pd.DataFrame,
    sources: pd.Series,
    jobs: dict[str, Job],
    results: dict[str, dict[str, Any]],
    out_dir: Path,
) -> pd.DataFrame:
    """The input rows (cut or passed through, rejected ones left out) pointing at the clips."""
    job_of = {i: job for job in jobs.values() for i in job.rows}
    keep, extra = [], []
    for i in range(len(df)):
        job = job_of.get(i)
        if job is None:  # pass-through: already a clip
            keep.append(i)
            extra.append({"path": os.path.relpath(sources.iat[i], out_dir), "cut": "none",
                          "source_path": os.path.relpath(sources.iat[i], out_dir)})  # fmt: skip
        elif job.key in results:
            r = results[job.key]
            keep.append(i)
            extra.append({
                "path": r["file"], "start": None, "end": None,
                "source_path": os.path.relpath(job.source, out_dir),
                "source_start": job.start, "source_end": job.end,
                "num_frames": r["num_frames"], "fps": r["fps"], "height": r["height"],
                "width": r["width"], "aspect_ratio": r["height"] / r["width"],
                "duration": r["num_frames"] / r["fps"], "codec": r["codec"], "cut": r["cut"],
            })  # fmt: skip
    out = df.iloc[keep].reset_index(drop=True)
    new = pd.DataFrame.from_records(extra)
    for column in new.columns:
        out[column] = new[column].to_numpy() if len(new) else []
    return out


def _rejects(path: Path, rows: list[dict[str, Any]]) -> None:
    if rows:
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        path.unlink(missing_ok=True)


@contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Any]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import Progress

    with Progress() as bar:
        task = bar.add_task("cutting clips", total=total)
        yield lambda n: bar.advance(task, n)


def main(cfg: ClipsConfig) -> Path:
    """Cut every clip of ``cfg.manifest`` (module docstring); returns the new manifest's path."""
    start_time = time.perf_counter()
    df = read_manifest(cfg.manifest)
    sources = resolve_paths(df, cfg.manifest)
    jobs, passthrough = plan_jobs(df, sources)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    done_path = cfg.out_dir / DONE_LOG
    results = _load_done(done_path, cfg.out_dir)
    todo: dict[str, list[Job]] = {}
    for job in jobs.values():
        if job.key not in results:
            todo.setdefault(job.source, []).append(job)
    reused, rejects = len(jobs) - sum(map(len, todo.values())), []
    log: IO[str]
    with (
        done_path.open("a", encoding="utf-8") as log,
        _progress(cfg.progress, len(jobs) - reused) as tick,
    ):
        for source, group in todo.items():
            for job, outcome in cut_source(source, group, cfg):
                tick(1)
                if isinstance(outcome, str):
                    rejects += [{"row": i, "path": str(df["path"].iat[i]), "start": job.start,
                                 "end": job.end, "reason": outcome} for i in job.rows]  # fmt: skip
                    continue
                results[job.key] = {"key": job.key, **outcome}
                log.write(json.dumps(results[job.key]) + "\n")
                log.flush()  # a kill loses at most the clip being cut
    out_dir = cfg.manifest_out.resolve().parent
    clips_dir = cfg.out_dir.resolve()
    for record in results.values():  # clip files are named relative to out_dir
        record["file"] = os.path.relpath(clips_dir / Path(record["file"]).name, out_dir)
    manifest = build_manifest(df, sources, jobs, results, out_dir)
    write_manifest(manifest, cfg.manifest_out)
    rejects.sort(key=lambda r: r["row"])
    _rejects(cfg.manifest_out.with_name(f"{cfg.manifest_out.stem}.rejects.jsonl"), rejects)
    if cfg.progress:
        cuts = manifest["cut"].value_counts().to_dict() if len(manifest) else {}
        print(f"clips: {len(manifest)} rows, {cuts}, {reused} reused, {len(rejects)} rejected "
              f"rows, {len(passthrough)} passed through, {time.perf_counter() - start_time:.1f} s")  # fmt: skip
    return cfg.manifest_out
