"""`nanosora story`: premise -> script -> shots -> keyframes -> clips -> film, resumable.

Everything a run makes lives in a work folder beside the film (`film.mp4` -> `film.story/`):

    script.json  shots.json          the writer's documents: edit them and --resume
    keyframes/<shot id>.png          swap one for your own image and --resume
    clips/<shot id>.mp4              one clip per shot, animated from its keyframe (--animate)
    state.json                       what each shot's files were made from, seeds, probe, errors

and beside the film: `film.srt`, `film.storyboard.html`, `film.storyboard.png`.

A shot's keyframe or clip is kept on `--resume` when it exists and either was made from the
same inputs (prompt, seed, model, sampler settings) or was replaced by hand since (its bytes
differ from what this pipeline wrote); everything else is redone. A shot whose generation fails
is recorded and the others go on; the run then ends with an error that lists the failed shots,
and `--resume` redoes only those.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from nanosora.config import PipelineConfig
from nanosora.pipeline import SHIPPED_MODEL, Pipeline, load_pipeline_config
from nanosora.story.animation import describe, resolve_mode
from nanosora.story.chat import ChatClient, ChatConfig
from nanosora.story.montage import MontageConfig, make_film
from nanosora.story.render import RenderConfig, stage_clips, stage_keyframes
from nanosora.story.schema import Script, ShotList, StoryError, load, save
from nanosora.story.state import RunState
from nanosora.story.storyboard import ShotView, write_html, write_sheet
from nanosora.story.translate import is_english, translate_shots, translate_texts
from nanosora.story.writer import WriterKind, check_vocabulary, make_writer

StopAfter = Literal["", "script", "shots", "keyframes", "clips"]
STOP_CHOICES = ("script", "shots", "keyframes", "clips")
RUN_FILES = ("script.json", "shots.json", "state.json", "keyframes", "clips")


@dataclass(frozen=True)
class StoryConfig:
    """One `nanosora story` run."""

    premise: str = ""
    out: str = "film.mp4"  # the film; the work folder and storyboard go beside it
    workdir: str = ""  # default: <out without suffix>.story
    num_shots: int = 6
    shot_seconds: float = 2.0  # planned duration per shot (offline writer)
    writer: WriterKind = "offline"
    translate: bool = False  # translate non-English premise/prompts through the chat backend
    chat: ChatConfig = field(default_factory=ChatConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    montage: MontageConfig = field(default_factory=MontageConfig)
    stop_after: StopAfter = ""
    resume: bool = False  # continue the run in the work folder, keeping finished shots
    overwrite: bool = False  # delete an earlier run's files in the work folder first

    def __post_init__(self) -> None:
        if self.stop_after not in ("", *STOP_CHOICES):
            raise StoryError(
                f"--stop-after must be one of {', '.join(STOP_CHOICES)}, not {self.stop_after!r}"
            )
        if self.resume and self.overwrite:
            raise StoryError("--resume and --overwrite exclude each other")

    @property
    def work(self) -> Path:
        """The work folder."""
        return Path(self.workdir) if self.workdir else Path(self.out).with_suffix(".story")


def prepare_workdir(cfg: StoryConfig) -> Path:
    """Create the work folder; refuse to clobber an earlier run unless --resume or --overwrite."""
    work = cfg.work
    earlier = [work / f for f in RUN_FILES if (work / f).exists()]
    if earlier and cfg.overwrite:
        import shutil

        for p in earlier:  # only our own files: --workdir may point at a folder with other things
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    elif earlier and not cfg.resume:
        raise StoryError(
            f"{work} holds an earlier run: pass --resume to continue it (finished shots are kept) "
            "or --overwrite to start over"
        )
    work.mkdir(parents=True, exist_ok=True)
    return work


def model_dir(cfg: StoryConfig) -> Path:
    """The pipeline directory the run draws with."""
    return Path(cfg.render.model) if cfg.render.model else SHIPPED_MODEL


def model_config(path: Path) -> PipelineConfig:
    """The pipeline's settings (vocabulary, clip shape), read from pipeline.yaml without weights."""
    try:
        return load_pipeline_config(path)
    except FileNotFoundError as e:
        raise StoryError(str(e)) from None


def model_id(path: Path) -> str:
    """Identifies the weights: a retrained model invalidates earlier keyframes and clips."""
    w = path / "transformer" / "model.safetensors"
    st = w.stat() if w.is_file() else None
    return f"{path.resolve()}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}"


def stage_script(cfg: StoryConfig, work: Path, chat: ChatClient | None, vocabulary: str) -> Script:
    """Load `script.json` on resume, else write it from the premise."""
    path = work / "script.json"
    if path.is_file():
        return load(Script, path)
    premise = cfg.premise.strip()
    if not premise:
        raise StoryError(
            'the premise is empty: describe the story, e.g. nanosora story "a red ball falls"'
        )
    if cfg.writer == "offline" and cfg.translate and not is_english(premise):
        if chat is None:
            raise StoryError(
                "--translate needs a chat backend (--chat-base-url or OPENAI_BASE_URL)"
            )
        premise = translate_texts({"premise": premise}, chat)["premise"]
    writer = make_writer(cfg.writer, chat, vocabulary, cfg.shot_seconds)
    script = writer.write_script(premise)
    save(script, path)
    return script


def stage_shots(cfg: StoryConfig, work: Path, script: Script, chat: ChatClient | None,
                vocabulary: str) -> ShotList:  # fmt: skip
    """Load `shots.json` on resume (edits validated), else plan it; prompts made English."""
    path = work / "shots.json"
    if path.is_file():
        shots = load(ShotList, path)
    else:
        shots = make_writer(cfg.writer, chat, vocabulary, cfg.shot_seconds).plan_shots(
            script, cfg.num_shots
        )
    translated = translate_shots(shots, chat if cfg.translate else None)
    if translated is not shots:  # keep the author's words beside the model's English prompt
        originals = {s.id: s.prompt for s in shots.shots}
        translated = translated.model_copy(update={"shots": [
            s.model_copy(update={"description": f"{s.description} (prompt was: {originals[s.id]})"[:2000]})
            if s.prompt != originals[s.id] else s for s in translated.shots]})  # fmt: skip
    try:
        check_vocabulary(translated, vocabulary)
    except ValueError as e:
        print(f"warning: {e}")
    save(translated, path)
    return translated


def lazy_pipeline(path: Path) -> Callable[[], Pipeline]:
    """Load the pipeline on first use: resumed runs with nothing to draw never pay for it."""
    cache: list[Pipeline] = []

    def get() -> Pipeline:
        if not cache:
            cache.append(Pipeline.load(path))
        return cache[0]

    return get


def _timed(state: RunState, name: str, t0: float) -> None:
    state.data["timings"][name] = round(time.time() - t0, 2)
    state.save()
    print(f"{name}: {time.time() - t0:.1f}s")


def shot_views(shots: ShotList, work: Path, state: RunState) -> list[ShotView]:
    """What the storyboard shows per shot, from the files and state.json."""
    views = []
    for shot in shots.shots:
        rec = state.data["shots"].get(shot.id, {})
        kf, clip = rec.get("keyframe", {}), rec.get("clip", {})
        error = "; ".join(
            f"{part}: {r['error']}"
            for part, r in (("keyframe", kf), ("clip", clip))
            if r.get("error")
        )
        clip_path = work / "clips" / f"{shot.id}.mp4"
        status = "failed" if error else "done" if clip_path.is_file() else "pending"
        probe, verdict = clip.get("probe", ""), ""
        if "passed" in clip:  # the scenes grader's verdict: its reason, or what it saw
            verdict = "passed" if clip["passed"] else "failed"
        elif probe and clip.get("matched") is not None and clip["matched"] >= 0:
            probe += (
                " (matches the prompt)" if clip["matched"] == 3 else f" ({clip['matched']}/3 match)"
            )
        views.append(
            ShotView(
                keyframe=work / "keyframes" / f"{shot.id}.png",
                clip=clip_path,
                seed=clip.get("seed", kf.get("seed")),
                status=status,
                error=error,
                probe=probe,
                verdict=verdict,
            )
        )
    return views


def failures(shots: ShotList, state: RunState) -> list[str]:
    """'shot 3 ('s03') clip: error' for every shot with a recorded error."""
    out = []
    for i, shot in enumerate(shots.shots):
        for part in ("keyframe", "clip"):
            err = state.data["shots"].get(shot.id, {}).get(part, {}).get("error")
            if err:
                out.append(f"shot {i + 1} ({shot.id!r}) {part}: {err}")
    return out


def write_storyboard(cfg: StoryConfig, script: Script, shots: ShotList, work: Path, state: RunState,
                     film: Path | None) -> Path:  # fmt: skip
    """`<film>.storyboard.html` and `.png` beside the film; returns the page."""
    stem = Path(cfg.out).with_suffix("")
    views = shot_views(shots, work, state)
    sheet = write_sheet(stem.with_name(stem.name + ".storyboard.png"), shots.shots, views)
    return write_html(
        stem.with_name(stem.name + ".storyboard.html"), script, shots, views, film, sheet
    )


def _finish_or_fail(shots: ShotList, work: Path, state: RunState) -> None:
    """StoryError listing the failed shots, if any (their finished neighbours stay on disk)."""
    failed = failures(shots, state)
    if failed:
        raise StoryError(
            f"{len(failed)} shot stage(s) failed:\n  "
            + "\n  ".join(failed)
            + f"\nfinished shots are kept in "
            f"{work}; fix the cause (edit shots.json, swap a keyframe) and run again with --resume "
            "to redo only these"
        )


def main(cfg: StoryConfig) -> Path:
    """Run the story pipeline; returns the film (or, with --stop-after, that stage's output)."""
    t_start = time.time()
    work = prepare_workdir(cfg)
    state = RunState(work / "state.json")
    state.data.setdefault("premise", cfg.premise)
    if cfg.premise and cfg.premise != state.data["premise"] and (work / "script.json").is_file():
        print(
            f"warning: resuming with the saved script of {state.data['premise']!r}; the new premise is ignored"
        )
    chat = ChatClient(cfg.chat) if cfg.writer == "chat" or cfg.translate else None
    mdir = model_dir(cfg)
    pcfg = model_config(mdir)
    vocabulary = pcfg.vocabulary
    mode = resolve_mode(cfg.render.animate, cfg.render.num_frames or pcfg.num_frames, vocabulary)
    # 1-2. Writer: script and shot list (kept on resume, so hand edits win).
    t0 = time.time()
    script = stage_script(cfg, work, chat, vocabulary)
    if cfg.stop_after == "script":
        return work / "script.json"
    shots = stage_shots(cfg, work, script, chat, vocabulary)
    _timed(state, "writer", t0)
    if cfg.stop_after == "shots":
        return work / "shots.json"
    # 3-4. Keyframes and clips, shot by shot (batched), failures recorded per shot.
    get_pipe, mid = lazy_pipeline(mdir), model_id(mdir)
    t0 = time.time()
    n = stage_keyframes(shots, work, state, cfg.render, get_pipe, mid, vocabulary)
    _timed(state, f"keyframes ({n} drawn)", t0)
    if cfg.stop_after != "keyframes":
        print(f"animation: {describe(mode)} [--animate {cfg.render.animate}]")
        state.data["animate"] = mode
        t0 = time.time()
        n = stage_clips(shots, work, state, cfg.render, get_pipe, mid, vocabulary, mode)
        _timed(state, f"clips ({n} drawn)", t0)
    page = write_storyboard(cfg, script, shots, work, state, None)
    _finish_or_fail(shots, work, state)
    if cfg.stop_after in ("keyframes", "clips"):
        print(f"stopped after {cfg.stop_after}: see {page}; edit and run again with --resume")
        return work
    # 5. Montage, then the storyboard again with the film in it.
    t0 = time.time()
    clips = [work / "clips" / f"{s.id}.mp4" for s in shots.shots]
    film, srt = make_film(shots.shots, clips, script.title, script.logline, cfg.out, cfg.montage)
    _timed(state, "montage", t0)
    write_storyboard(cfg, script, shots, work, state, film)
    state.data["timings"]["total"] = round(time.time() - t_start, 2)
    state.save()
    print(f"wrote {film} ({len(shots.shots)} shots), {srt}, {page} in {time.time() - t_start:.1f}s")
    return film
