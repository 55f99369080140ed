"""The studio's jobs without the web page: generate, compare, watch the denoising, image-to-video,
extension, story and gallery re-runs.

Each job checks its inputs against the bounds below (a `StudioError` names the field and the
limit), draws with the shared pipelines, grades every clip (`studio.grade`), writes its files
into the output folder (`studio.store`) and records itself in the gallery, so any result can be
run again from its settings. Jobs may run in several threads at once: the pipelines are loaded
once, under a lock, and only read afterwards.
"""

from __future__ import annotations

import json
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch

from nanosora.config import PipelineConfig
from nanosora.generate import prepare_frames
from nanosora.pipeline import Pipeline, PromptError, check_prompt, load_pipeline_config, replace_cfg
from nanosora.story import RenderConfig, ShotList, StoryConfig, StoryError
from nanosora.story import main as story_main
from nanosora.story.schema import load, save, validate
from nanosora.studio.grade import Grade, grade_clip
from nanosora.studio.store import Store, StudioError
from nanosora.studio.uploads import Upload, read_upload
from nanosora.video.io import contact_sheet, read_video, write_gif, write_video

SHIPPED = "shipped"
MAX_STEPS = 100
MAX_FRAMES = 33  # 4k+1; the shipped model was trained on 17
MAX_CFG = 20.0
MAX_SEED = 2**31 - 1
MAX_SEEDS = 8  # clips in one comparison grid
MAX_EXTEND = 32  # frames added to an uploaded clip
MAX_SNAPSHOTS = 10  # denoising steps shown in a strip
MAX_PREMISE = 1000  # characters
MAX_SHOTS = 8
MAX_UPLOAD_MB = 5.0
MB = 2**20  # bytes; the browser's size check counts in these too

# (steps done, steps in all or None when unknown); it may raise `Cancelled` to stop the job.
Watch = Callable[[int, int | None], None]


class Cancelled(Exception):
    """The person who asked for a job is gone (their tab was closed)."""


@dataclass(frozen=True)
class Settings:
    """What one clip is drawn with."""

    prompt: str
    seed: int = 0
    steps: int = 25
    cfg_scale: float = 5.0
    eta: float = 0.8
    num_frames: int = 17
    model: str = SHIPPED


@dataclass
class Result:
    """A finished job, as the page shows it and the gallery keeps it."""

    id: str
    kind: str  # generate, animate, extend, compare, denoise, story
    settings: dict
    files: dict[str, str]  # role (mp4, gif, grid, sheet, strip, film, storyboard) -> relative path
    clips: list[dict] = field(default_factory=list)  # per clip: {"label", "grade": Grade fields}
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # warnings about the prompt and the like

    @property
    def grades(self) -> list[Grade]:
        return [Grade(**c["grade"]) for c in self.clips]


def model_names(paths: list[Path]) -> dict[str, Path | None]:
    """``{"shipped": None, <folder name>: path, ...}``; repeated folder names get -2, -3."""
    out: dict[str, Path | None] = {SHIPPED: None}
    for p in paths:
        name, n = Path(p).resolve().name or "model", 2
        while name in out:
            name, n = f"{Path(p).resolve().name}-{n}", n + 1
        out[name] = Path(p)
    return out


def _integer(value: object, name: str, lo: int, hi: int) -> int:
    try:
        f = float(value)  # the page sends numbers as floats
    except (TypeError, ValueError):
        raise StudioError(f"{name} must be a whole number, not {value!r}") from None
    if not math.isfinite(f) or f != int(f):
        raise StudioError(f"{name} must be a whole number, not {value!r}")
    if not lo <= f <= hi:
        raise StudioError(f"{name} must be between {lo} and {hi}, not {int(f)}")
    return int(f)


def _number(value: object, name: str, lo: float, hi: float) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"{name} must be a number, not {value!r}") from None
    if not (math.isfinite(f) and lo <= f <= hi):
        raise StudioError(f"{name} must be between {lo:g} and {hi:g}, not {value!r}")
    return f


def parse_steps(text: str, steps: int) -> list[int]:
    """'1, 5, 25' -> [1, 5, 25] (steps of ``steps`` to show); empty -> 6 spread over the run."""
    if not str(text).strip():
        return sorted({round(steps * k / 6) or 1 for k in range(1, 7)})
    try:
        picks = sorted({int(v) for v in str(text).replace(",", " ").split()})
    except ValueError:
        raise StudioError(f"steps to show: {text!r} is not a list of whole numbers") from None
    if not picks or picks[0] < 1 or picks[-1] > steps:
        raise StudioError(f"steps to show must lie between 1 and {steps} (the sampling steps)")
    if len(picks) > MAX_SNAPSHOTS:
        raise StudioError(f"steps to show: at most {MAX_SNAPSHOTS}, got {len(picks)}")
    return picks


def tile(videos: list[np.ndarray], labels: list[str], scale: int = 2) -> np.ndarray:
    """Clips side by side, each upscaled ``scale``x (nearest) under a label: one (T, H', W', 3)."""
    gap, label_h = 4, 18
    t = max(len(v) for v in videos)
    h = max(v.shape[1] for v in videos) * scale
    w = max(v.shape[2] for v in videos) * scale
    out = np.full((t, label_h + h + gap, len(videos) * (w + gap) + gap, 3), 32, np.uint8)
    for i, (v, label) in enumerate(zip(videos, labels, strict=True)):
        x = gap + i * (w + gap)
        big = v.repeat(scale, axis=1).repeat(scale, axis=2)
        out[: len(v), label_h : label_h + big.shape[1], x : x + big.shape[2]] = big
        out[len(v) :, label_h : label_h + big.shape[1], x : x + big.shape[2]] = big[-1]
        cv2.putText(out[0], label.encode("ascii", "replace").decode()[: w // 7], (x, label_h - 5),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA)  # fmt: skip
    out[1:, :label_h] = out[0, :label_h]
    return out


def _mark(grade: Grade) -> str:
    """ASCII mark for labels drawn into pictures."""
    return {True: "OK", False: "NO", None: "--"}[grade.matches]


class Studio:
    """The jobs, over one output folder and a set of named pipeline directories."""

    def __init__(self, out: str | Path, models: dict[str, Path | None] | None = None,
                 max_upload_mb: float = MAX_UPLOAD_MB) -> None:  # fmt: skip
        self.store = Store(out)
        self.models = dict(models or {SHIPPED: None})
        # pipeline.yaml of every model is read now: a wrong --model fails at start, not mid-job
        self.configs: dict[str, PipelineConfig] = {
            name: load_pipeline_config(path) for name, path in self.models.items()
        }
        self.max_bytes = int(max_upload_mb * MB)
        self._pipes: dict[str, Pipeline] = {}
        self._lock = threading.Lock()

    # ---- models and settings --------------------------------------------------------------

    def pipeline(self, name: str) -> Pipeline:
        """The loaded pipeline ``name`` (loaded on first use, once)."""
        if name not in self.models:
            raise StudioError(f"unknown model {name!r}; this studio has {', '.join(self.models)}")
        with self._lock:
            if name not in self._pipes:
                self._pipes[name] = Pipeline.load(self.models[name])
            return self._pipes[name]

    def defaults(self, model: str = SHIPPED) -> Settings:
        """The model's own sampler settings."""
        c = self.configs[model]
        return Settings("", 0, c.steps, c.cfg_scale, c.eta, c.num_frames, model)

    def check(self, s: Settings) -> tuple[Settings, list[str]]:
        """Settings within bounds (numbers as ints and floats), and warnings about the prompt."""
        if s.model not in self.models:
            raise StudioError(
                f"unknown model {s.model!r}; this studio has {', '.join(self.models)}"
            )
        try:
            warnings = check_prompt(s.prompt, self.configs[s.model].vocabulary)
        except PromptError as e:
            raise StudioError(str(e)) from None
        frames = _integer(s.num_frames, "frames", 1, MAX_FRAMES)
        if (frames - 1) % 4:
            raise StudioError(f"frames must be 4k+1 (1, 5, 9, 13, 17, ...), not {frames}")
        checked = Settings(
            prompt=s.prompt.strip(),
            seed=_integer(s.seed, "seed", 0, MAX_SEED),
            steps=_integer(s.steps, "steps", 1, MAX_STEPS),
            cfg_scale=_number(s.cfg_scale, "guidance", 0.0, MAX_CFG),
            eta=_number(s.eta, "eta", 0.0, 1.0),
            num_frames=frames,
            model=s.model,
        )
        if self.configs[s.model].serves_few_step(checked.steps, frames):
            warnings.append(
                f"at {checked.steps} steps, text-to-video comes from the model's distilled "
                "few-step transformer: guidance and eta do not apply (image-to-video and "
                "extension keep them)"
            )
        return checked, warnings

    def read_upload(self, path: str | Path, name: str, model: str = SHIPPED) -> Upload:
        """Check and fit an uploaded image or clip; keeps its frames for re-runs."""
        c = self.configs.get(model) or self.configs[SHIPPED]
        up = read_upload(path, name, self.max_bytes, c.height, c.width, c.fps)
        self.store.save_upload(up.digest, up.frames)
        return up

    # ---- drawing ----------------------------------------------------------------------------

    def _draw(self, s: Settings, watch: Watch | None, seeds: list[int] | None = None,
              prefix: np.ndarray | None = None,
              extra: Callable[[int, torch.Tensor], None] | None = None) -> np.ndarray:  # fmt: skip
        """Videos (B, T, H, W, 3) for ``seeds`` (default: the settings' seed); ``extra`` sees
        every step's data estimate."""
        pipe = self.pipeline(s.model)

        def step(i: int, x0: torch.Tensor) -> None:
            if watch is not None:
                watch(i + 1, s.steps)
            if extra is not None:
                extra(i, x0)

        seeds = seeds or [s.seed]
        return pipe.generate([s.prompt] * len(seeds), steps=s.steps, cfg_scale=s.cfg_scale,
                             num_frames=s.num_frames, seeds=seeds, prefix=prefix, eta=s.eta,
                             callback=step)  # fmt: skip

    def _clip_files(self, folder: Path, frames: np.ndarray, fps: float) -> dict[str, str]:
        """``<id>.mp4`` and ``<id>.gif`` of one clip."""
        mp4 = write_video(folder / f"nanosora-{folder.name}.mp4", frames, fps=fps)
        gif = write_gif(folder / f"nanosora-{folder.name}.gif", frames, fps=fps)
        return {"mp4": self.store.relative(mp4), "gif": self.store.relative(gif)}

    def _finish(self, result: Result, t0: float) -> Result:
        result.seconds = round(time.time() - t0, 2)
        self.store.add(asdict(result))
        return result

    def generate(self, s: Settings, watch: Watch | None = None, image: str | None = None,
                 clip: str | None = None, extend: int = 0) -> Result:  # fmt: skip
        """One clip from the prompt, from an uploaded first frame (``image``, an upload digest),
        or continuing an uploaded ``clip`` by ``extend`` frames."""
        t0 = time.time()
        s, notes = self.check(s)
        kind, settings = "generate", asdict(s)
        pipe = self.pipeline(s.model)
        c = pipe.cfg
        if image is not None and clip is not None:
            raise StudioError("give an image to animate or a clip to extend, not both")
        if clip is not None:
            extend = _integer(extend, "frames to add", 1, MAX_EXTEND)
            frames_in = self._fitted(clip, c)
            kind, settings = "extend", {**settings, "clip": clip, "extend": extend}
            done = [0]

            def step(i: int, x0: torch.Tensor) -> None:
                done[0] += 1
                if watch is not None:
                    watch(done[0], None)

            frames = replace_cfg(pipe, eta=s.eta).extend(
                s.prompt, frames_in, extend, s.seed, s.steps, s.cfg_scale, callback=step
            )
        elif image is not None:
            if s.num_frames < 5:
                raise StudioError("image-to-video needs 5 or more frames (the image is the first)")
            kind, settings = "animate", {**settings, "image": image}
            frames = self._draw(s, watch, prefix=self._fitted(image, c)[:1])[0]
        else:
            frames = self._draw(s, watch)[0]
        rid = self.store.new_id()
        folder = self.store.folder("results", rid)
        grade = grade_clip(frames, s.prompt)
        result = Result(rid, kind, settings, self._clip_files(folder, frames, c.fps),
                        [{"label": f"seed {s.seed}", "grade": grade.to_dict()}], notes=notes)  # fmt: skip
        return self._finish(result, t0)

    def _fitted(self, digest: str, c: PipelineConfig) -> np.ndarray:
        """An upload's frames at the pipeline's size."""
        frames = self.store.load_upload(digest)
        return prepare_frames(frames, c.height, c.width, "the upload")

    def compare(self, s: Settings, count: int = 4, other: str | None = None,
                watch: Watch | None = None) -> Result:  # fmt: skip
        """One prompt over ``count`` seeds (from the settings' seed), or, with ``other``, the
        settings' seed over two models: a grid video, a contact sheet and a verdict per clip."""
        t0 = time.time()
        s, notes = self.check(s)
        if other is None:
            count = _integer(count, "seeds in the grid", 2, MAX_SEEDS)
            seeds = [(s.seed + i) % (MAX_SEED + 1) for i in range(count)]
            videos = list(self._draw(s, watch, seeds=seeds))
            names = [f"seed {k}" for k in seeds]
            settings = {**asdict(s), "seeds": seeds}
            fps = self.configs[s.model].fps
        else:
            b, notes_b = self.check(replace(s, model=other))
            videos = [self._draw(s, watch)[0], self._draw(b, watch)[0]]
            names = [s.model, other]
            notes += [n for n in notes_b if n not in notes]
            settings = {**asdict(s), "models": [s.model, other]}
            fps = self.configs[s.model].fps
        grades = [grade_clip(v, s.prompt) for v in videos]
        rid = self.store.new_id()
        folder = self.store.folder("results", rid)
        labels = [f"{n} {_mark(g)}" for n, g in zip(names, grades, strict=True)]
        grid = write_video(folder / f"nanosora-{rid}-grid.mp4", tile(videos, labels), fps=fps)
        sheet = folder / f"nanosora-{rid}-sheet.png"
        contact_sheet(sheet, videos, [f"{n}: {g.verdict} (saw {g.seen})"
                                      for n, g in zip(names, grades, strict=True)])  # fmt: skip
        files = {"grid": self.store.relative(grid), "sheet": self.store.relative(sheet)}
        clips = [{"label": n, "grade": g.to_dict()} for n, g in zip(names, grades, strict=True)]
        return self._finish(Result(rid, "compare", settings, files, clips, notes=notes), t0)

    def denoise(self, s: Settings, show: str = "", watch: Watch | None = None) -> Result:
        """One clip, and the decoded data estimate at the chosen steps (``show``: '1, 5, 25';
        empty: six spread over the run) as a strip: a row per step, five frames each."""
        t0 = time.time()
        s, notes = self.check(s)
        picks = parse_steps(show, s.steps)
        pipe = self.pipeline(s.model)
        estimates: dict[int, np.ndarray] = {}

        def keep(i: int, x0: torch.Tensor) -> None:
            if i + 1 in picks:
                estimates[i + 1] = pipe.decode_latents(x0)[0]

        frames = self._draw(s, watch, extra=keep)[0]
        rid = self.store.new_id()
        folder = self.store.folder("results", rid)
        strip = folder / f"nanosora-{rid}-denoise.png"
        contact_sheet(strip, [estimates[k] for k in picks],
                      [f"step {k}/{s.steps}: the estimate of the clean clip" for k in picks])  # fmt: skip
        files = {
            **self._clip_files(folder, frames, pipe.cfg.fps),
            "strip": self.store.relative(strip),
        }
        grade = grade_clip(frames, s.prompt)
        settings = {**asdict(s), "show": picks}
        clips = [{"label": f"seed {s.seed}", "grade": grade.to_dict()}]
        return self._finish(Result(rid, "denoise", settings, files, clips, notes=notes), t0)

    # ---- story ------------------------------------------------------------------------------

    def _story_config(self, rid: str, premise: str = "", **kw) -> StoryConfig:
        model = kw.pop("model", SHIPPED)
        if model not in self.models:
            raise StudioError(f"unknown model {model!r}; this studio has {', '.join(self.models)}")
        path = self.models[model]
        film = self.store.folder("stories", rid) / "film.mp4"
        render = RenderConfig(model=str(path or ""), seed=kw.pop("seed", 0))
        return StoryConfig(premise=premise, out=str(film), render=render, **kw)

    def story_shots(self, premise: str, shots: int = 4, seconds: float = 2.0, seed: int = 0,
                    model: str = SHIPPED) -> tuple[str, ShotList]:  # fmt: skip
        """A premise -> (story id, its shot list), written by the offline writer, not drawn."""
        premise = str(premise).strip()
        if not premise:
            raise StudioError(
                "the premise is empty: tell a story, e.g. 'a red ball falls, then rises'"
            )
        if len(premise) > MAX_PREMISE:
            raise StudioError(f"the premise has {len(premise)} characters; at most {MAX_PREMISE}")
        shots = _integer(shots, "shots", 1, MAX_SHOTS)
        seconds = _number(seconds, "seconds per shot", 0.5, 10.0)
        seed = _integer(seed, "seed", 0, MAX_SEED)
        rid = self.store.new_id()
        cfg = self._story_config(rid, premise, num_shots=shots, shot_seconds=seconds, seed=seed,
                                 model=model, stop_after="shots")  # fmt: skip
        try:
            story_main(cfg)
        except StoryError as e:
            raise StudioError(str(e)) from None
        meta = {
            "premise": premise,
            "shots": shots,
            "seconds": seconds,
            "seed": seed,
            "model": model,
        }
        (cfg.work / "studio.json").write_text(json.dumps(meta))
        return rid, load(ShotList, cfg.work / "shots.json")

    def story_meta(self, rid: str) -> dict:
        work = self.store.folder("stories", rid) / "film.story"
        if not (work / "studio.json").is_file():
            raise StudioError(f"no story {rid!r}: write its shots first")
        return json.loads((work / "studio.json").read_text())

    def story_film(self, rid: str, rows: list[list] | None = None, redraw: str = "",
                   watch: Watch | None = None) -> Result:  # fmt: skip
        """Draw the story's shots (with the edits in ``rows``: shot id, prompt, seconds, seed)
        and edit the film; ``redraw``: a shot id drawn again with a new seed. Only shots whose
        prompt or seed changed are drawn again."""
        t0 = time.time()
        meta = self.story_meta(rid)
        cfg = self._story_config(rid, seed=meta["seed"], model=meta["model"], resume=True)
        shots = load(ShotList, cfg.work / "shots.json")
        if rows is not None:
            shots = edit_shots(shots, rows)
        if redraw:
            shots = reseed(shots, redraw)
        save(shots, cfg.work / "shots.json")
        if watch is not None:
            watch(0, None)
        try:
            film = story_main(cfg)
        except StoryError as e:
            raise StudioError(str(e)) from None
        clips = []
        for shot in shots.shots:
            frames = read_video(cfg.work / "clips" / f"{shot.id}.mp4")
            grade = grade_clip(frames, shot.prompt)
            clips.append({"label": f"{shot.id}: {shot.prompt}", "grade": grade.to_dict()})
        board = Path(film).with_suffix(".storyboard.png")
        files = {"film": self.store.relative(Path(film)), "storyboard": self.store.relative(board),
                 "shots": self.store.relative(cfg.work / "shots.json")}  # fmt: skip
        settings = {**meta, "story": rid}
        return self._finish(Result(rid, "story", settings, files, clips), t0)

    # ---- gallery ----------------------------------------------------------------------------

    def rerun(self, rid: str, watch: Watch | None = None) -> Result:
        """Run a gallery entry again with its settings (a story: its premise, from the start)."""
        entry = self.store.entry(rid)
        st = dict(entry["settings"])
        if entry["kind"] == "story":
            new, _ = self.story_shots(st["premise"], st["shots"], st["seconds"], st["seed"],
                                      st["model"])  # fmt: skip
            return self.story_film(new, watch=watch)
        s = Settings(**{k: st[k] for k in Settings.__dataclass_fields__ if k in st})
        match entry["kind"]:
            case "generate":
                return self.generate(s, watch)
            case "animate":
                return self.generate(s, watch, image=st["image"])
            case "extend":
                return self.generate(s, watch, clip=st["clip"], extend=st["extend"])
            case "compare" if "models" in st:
                return self.compare(s, other=st["models"][1], watch=watch)
            case "compare":
                return self.compare(s, len(st["seeds"]), watch=watch)
            case "denoise":
                return self.denoise(s, " ".join(map(str, st["show"])), watch)
        raise StudioError(f"result {rid} is of an unknown kind {entry['kind']!r}")


def edit_shots(shots: ShotList, rows: list[list]) -> ShotList:
    """The shot list with each row's prompt, seconds and seed (rows in shot order, by id)."""
    data = shots.model_dump(mode="json")
    if len(rows) != len(data["shots"]):
        raise StudioError(
            f"the shot list has {len(data['shots'])} shots; rows cannot be added or removed"
        )
    for i, row in enumerate(rows):
        shot = data["shots"][i]
        if len(row) != 4 or str(row[0]) != shot["id"]:
            raise StudioError(f"shot {i + 1}: the shot column must stay {shot['id']!r}")
        seed = row[3]
        shot["prompt"], shot["duration"] = str(row[1]), row[2]
        shot["seed"] = None if seed in (None, "") else seed
    try:
        return validate(ShotList, data, "the shot list")
    except StoryError as e:
        raise StudioError(str(e)) from None


def reseed(shots: ShotList, shot_id: str) -> ShotList:
    """The shot list with shot ``shot_id`` on a new random seed (kept in shots.json)."""
    ids = [s.id for s in shots.shots]
    if shot_id not in ids:
        raise StudioError(f"no shot {shot_id!r}; the shots are {', '.join(ids)}")
    i = ids.index(shot_id)
    new = shots.shots[i].model_copy(update={"seed": secrets.randbelow(MAX_SEED + 1)})
    return shots.model_copy(update={"shots": [*shots.shots[:i], new, *shots.shots[i + 1 :]]})
