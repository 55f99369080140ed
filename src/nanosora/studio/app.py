"""The studio's web page (Gradio) and server: `nanosora studio`.

One panel of settings (prompt, seed, steps, guidance, eta, frames, model) serves the tabs
Generate, Compare, Denoise and Image / clip; Story and Gallery have their own inputs. Every job
goes through one queue that runs as many jobs at once as there are cores (each on its own core)
and shows the others their place. A job checks at every sampling step whether the tab that asked
for it is still open, and stops when it is not.

Gradio is imported only when the studio starts (the rest of the CLI does not pay for it), after
its telemetry is switched off and its upload cache is pointed inside the output folder.
"""

import os
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nanosora.pipeline import MAX_PROMPT_CHARS
from nanosora.shapes.grammar import canonical_caption
from nanosora.shapes.scenes import held_out
from nanosora.shapes.world import eval_prompts
from nanosora.story.schema import ShotList, load
from nanosora.studio.engine import (
    MAX_CFG,
    MAX_EXTEND,
    MAX_FRAMES,
    MAX_PREMISE,
    MAX_SEED,
    MAX_SEEDS,
    MAX_SHOTS,
    MAX_STEPS,
    MAX_UPLOAD_MB,
    MB,
    SHIPPED,
    Cancelled,
    Result,
    Settings,
    Studio,
    model_names,
)
from nanosora.studio.grade import Grade
from nanosora.studio.store import StudioError
from nanosora.studio.uploads import CLIP_SUFFIXES, IMAGE_SUFFIXES

CSS = """
video, img { image-rendering: pixelated; }
#gen-verdict, #cmp-verdict, #dn-verdict, #up-verdict, #story-verdict, #gal-verdict { min-height: 2em; }
"""
ICON = {True: "✓", False: "✗", None: "–"}


@dataclass(frozen=True)
class StudioConfig:
    """One `nanosora studio` server."""

    out: str = "studio"  # the output folder: everything the studio writes goes here
    models: tuple[str, ...] = ()  # pipeline directories besides the shipped model
    host: str = "127.0.0.1"
    port: int = 7860
    jobs: int = 0  # jobs run at once; 0 = one per core
    queue: int = 32  # jobs that may wait
    max_upload_mb: float = MAX_UPLOAD_MB


class Sessions:
    """Which browser sessions have a job running, and which of those closed their tab."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running: Counter[str] = Counter()
        self.closed: set[str] = set()
        self.cancelled = 0  # jobs stopped because their tab closed

    def start(self, sid: str) -> None:
        with self._lock:
            self.running[sid] += 1

    def end(self, sid: str) -> None:
        with self._lock:
            self.running[sid] -= 1
            if self.running[sid] <= 0:
                del self.running[sid]
                self.closed.discard(sid)

    def close(self, sid: str) -> None:
        with self._lock:
            if sid in self.running:
                self.closed.add(sid)

    def is_closed(self, sid: str) -> bool:
        with self._lock:
            return sid in self.closed


def examples() -> list[str]:
    """Example prompts: compositions the shipped model learned, held-out ones, and two scenes
    prompts that the one-object model cannot draw (the grader says why)."""
    one = [p for *_, p in eval_prompts("train")[:3]] + [p for *_, p in eval_prompts("heldout")[:2]]
    scenes = [canonical_caption(held_out()[c][0]) for c in ("spatial", "numeracy")]
    return one + scenes


def verdict_markdown(r: Result, seed_note: bool = True) -> str:
    """Per clip: the verdict, what was read back and by which grader; then the settings."""
    lines = []
    grades = [Grade(**c["grade"]) for c in r.clips]
    if len(grades) == 1:
        g = grades[0]
        lines.append(f"{ICON[g.matches]} **{g.verdict}**  \n"
                     f"read back by the {g.grader}: *{g.seen}*")  # fmt: skip
    elif grades:
        passed = sum(g.matches is True for g in grades)
        lines.append(f"**{passed} of {len(grades)} match the prompt**\n\n"
                     "| | clip | verdict | read back |\n|---|---|---|---|\n" + "\n".join(
                         f"| {ICON[g.matches]} | {c['label']} | {g.verdict} | {g.seen} ({g.grader}) |"
                         for c, g in zip(r.clips, grades, strict=True)))  # fmt: skip
    s = r.settings
    if seed_note and "steps" in s:
        lines.append(
            f"<small>seed {s['seed']} · {s['steps']} steps · guidance {s['cfg_scale']:g} · "
            f"eta {s['eta']:g} · {s['num_frames']} frames · model {s['model']} · "
            f"{r.seconds:.1f} s · result {r.id}</small>"
        )
    lines += [f"**warning:** {n}" for n in r.notes]
    return "\n\n".join(lines)


def _upload_types() -> list[str]:
    return list(IMAGE_SUFFIXES + CLIP_SUFFIXES)


def build(studio: Studio, jobs: int, sessions: Sessions) -> Any:
    """The gr.Blocks page over ``studio``; ``jobs``: how many run at once."""
    import gradio as gr

    names = list(studio.models)
    d = studio.defaults()
    path = studio.store.inside

    def refuse(text: str) -> Exception:
        """The page's error message (kept until closed); no traceback in the server's log."""
        return gr.Error(text, duration=None, print_exception=False)

    def watch_for(request: gr.Request, progress: gr.Progress):
        sid = request.session_hash or ""

        def watch(done: int, total: int | None) -> None:
            if sessions.is_closed(sid):
                raise Cancelled()
            progress((done, total), desc="sampling", unit="steps")

        return watch

    def run(request: gr.Request, progress: gr.Progress, kind: str, job) -> Result:
        """Run ``job(watch)``; refusals become the page's error message, a closed tab a log line."""
        sid = request.session_hash or ""
        sessions.start(sid)
        try:
            return job(watch_for(request, progress))
        except StudioError as e:
            raise refuse(str(e)) from None
        except Cancelled:
            sessions.cancelled += 1
            print(f"studio: a {kind} job stopped: its tab was closed", flush=True)
            raise refuse("stopped: the tab was closed") from None
        finally:
            sessions.end(sid)

    def settings(prompt, seed, rand, steps, cfg, eta, frames, model) -> Settings:
        if rand:
            seed = secrets.randbelow(MAX_SEED + 1)
        return Settings(prompt or "", seed, steps, cfg, eta, frames, model or SHIPPED)

    def clip_panel(name: str) -> tuple:
        """A playing video beside its verdict and its MP4 and GIF downloads."""
        with gr.Row():
            video = gr.Video(label="Video", autoplay=True, loop=True, interactive=False,
                             elem_id=f"{name}-video")  # fmt: skip
            with gr.Column():
                verdict = gr.Markdown(elem_id=f"{name}-verdict")
                files = gr.File(label="Downloads (MP4, GIF)", file_count="multiple",
                                interactive=False, elem_id=f"{name}-files")  # fmt: skip
        return video, verdict, files

    def clip_outputs(r: Result) -> tuple:
        files = [str(path(r.files[k])) for k in ("mp4", "gif")]
        return files[0], verdict_markdown(r), files, r.settings["seed"]

    # the server's copies of served files (.gradio/) are dropped after a day; results/ stays
    with gr.Blocks(title="nanosora studio", analytics_enabled=False,
                   delete_cache=(3600, 86400)) as demo:  # fmt: skip
        gr.Markdown(
            "# nanosora studio\n"
            f"Models: {', '.join(names)}. Every clip is read back by the probe or the scenes "
            "grader and compared with its prompt. "
            f"Output folder: `{studio.store.root}`."
        )
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                prompt = gr.Textbox(label="Prompt", lines=2, max_length=MAX_PROMPT_CHARS,
                                    placeholder="a red circle moving left", elem_id="prompt")  # fmt: skip
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0,
                                     maximum=MAX_SEED, elem_id="seed")  # fmt: skip
                    rand = gr.Checkbox(label="random seed", value=False, elem_id="random-seed")
                steps = gr.Slider(
                    1, MAX_STEPS, value=d.steps, step=1, label="Steps", elem_id="steps"
                )
                cfg = gr.Slider(0, MAX_CFG, value=d.cfg_scale, step=0.5, label="Guidance")
                eta = gr.Slider(0, 1, value=d.eta, step=0.05, label="Eta (fresh noise per step)")
                frames = gr.Slider(1, MAX_FRAMES, value=d.num_frames, step=4, label="Frames (4k+1)")
                model = gr.Dropdown(names, value=SHIPPED, label="Model", elem_id="model")
                gr.Examples(examples(), inputs=[prompt], label="Example prompts")
            common = [prompt, seed, rand, steps, cfg, eta, frames, model]
            with gr.Column(scale=3), gr.Tabs():
                with gr.Tab("Generate", id="generate"):
                    gen = gr.Button("Generate", variant="primary", elem_id="gen-button")
                    gen_video, gen_verdict, gen_files = clip_panel("gen")
                with gr.Tab("Compare", id="compare"):
                    with gr.Row():
                        cmp_mode = gr.Radio(["seeds", "models"], value="seeds", label="Compare",
                                            info="one prompt over several seeds, or one seed over two models")  # fmt: skip
                        cmp_count = gr.Slider(2, MAX_SEEDS, value=4, step=1,
                                              label="Seeds (from the seed in the settings)")  # fmt: skip
                        cmp_other = gr.Dropdown(names, value=names[-1], label="Second model")
                    cmp = gr.Button("Compare", variant="primary", elem_id="cmp-button")
                    cmp_grid = gr.Video(label="Grid", autoplay=True, loop=True, interactive=False,
                                        elem_id="cmp-grid")  # fmt: skip
                    cmp_verdict = gr.Markdown(elem_id="cmp-verdict")
                    cmp_sheet = gr.Image(label="Contact sheet", show_label=False,
                                         interactive=False, elem_id="cmp-sheet")  # fmt: skip
                with gr.Tab("Denoise", id="denoise"):
                    dn_show = gr.Textbox(label="Steps to show", elem_id="dn-show",
                                         placeholder="e.g. 1, 3, 6, 12, 25; empty: six spread over the run")  # fmt: skip
                    dn = gr.Button("Watch it denoise", variant="primary", elem_id="dn-button")
                    dn_strip = gr.Image(label="The estimate of the clean clip at each chosen step",
                                        show_label=False, interactive=False, elem_id="dn-strip")  # fmt: skip
                    with gr.Row():
                        dn_video = gr.Video(label="Result", autoplay=True, loop=True,
                                            interactive=False, elem_id="dn-video")  # fmt: skip
                        dn_verdict = gr.Markdown(elem_id="dn-verdict")
                with gr.Tab("Image / clip", id="upload"):
                    up_state = gr.State({})
                    with gr.Row():
                        up_file = gr.File(label="An image to animate or a clip to extend",
                                          file_types=_upload_types(), type="filepath",
                                          elem_id="up-file")  # fmt: skip
                        up_preview = gr.Image(label="What the model is given (first frame)",
                                              interactive=False, height=200, elem_id="up-preview")  # fmt: skip
                    up_message = gr.Markdown(
                        f"Images ({', '.join(IMAGE_SUFFIXES)}) or clips "
                        f"({', '.join(CLIP_SUFFIXES)}) up to {studio.max_bytes / MB:g} MB.",
                        elem_id="up-message",
                    )
                    up_extend = gr.Slider(1, MAX_EXTEND, value=16, step=1,
                                          label="Frames to add (clips)")  # fmt: skip
                    up = gr.Button("Animate / extend", variant="primary", elem_id="up-button")
                    up_video, up_verdict, up_files = clip_panel("up")
                with gr.Tab("Story", id="story"):
                    story_id = gr.State("")
                    with gr.Row():
                        premise = gr.Textbox(label="Premise", lines=3, max_length=MAX_PREMISE,
                                             scale=3, elem_id="premise",
                                             placeholder="A red ball falls. Then it rises again.")  # fmt: skip
                        with gr.Column(scale=1):
                            n_shots = gr.Slider(1, MAX_SHOTS, value=4, step=1, label="Shots")
                            shot_s = gr.Slider(
                                0.5, 10, value=2.0, step=0.5, label="Seconds per shot"
                            )
                    write = gr.Button("Write the shot list", elem_id="story-write")
                    table = gr.Dataframe(headers=["shot", "prompt", "seconds", "seed"],
                                         datatype=["str", "str", "number", "number"],
                                         type="array", interactive=True, label="Shot list (edit prompts, seconds, seeds)",
                                         elem_id="story-table")  # fmt: skip
                    with gr.Row():
                        film_btn = gr.Button("Draw and edit the film", variant="primary",
                                             elem_id="story-film")  # fmt: skip
                        which = gr.Dropdown([], label="Shot", elem_id="story-which")
                        redraw = gr.Button("Draw this shot again", elem_id="story-redraw")
                    with gr.Row():
                        film = gr.Video(label="Film", interactive=False, elem_id="story-video")
                        board = gr.Image(label="Storyboard", show_label=False,
                                         interactive=False, elem_id="story-board")  # fmt: skip
                    story_verdict = gr.Markdown(elem_id="story-verdict")
                with gr.Tab("Gallery", id="gallery") as gallery_tab:
                    gal_ids = gr.State([])
                    gal_sel = gr.State("")
                    gallery = gr.Gallery(label="Past results (newest first)", columns=6,
                                         allow_preview=False, object_fit="contain",
                                         elem_id="gallery")  # fmt: skip
                    gal_info = gr.Markdown("Pick a result to see its settings.", elem_id="gal-info")
                    gal_run = gr.Button("Run it again", variant="primary", elem_id="gal-rerun")
                    with gr.Row():
                        gal_video = gr.Video(label="Video", autoplay=True, loop=True,
                                             interactive=False, elem_id="gal-video")  # fmt: skip
                        gal_verdict = gr.Markdown(elem_id="gal-verdict")

        # ---- handlers ------------------------------------------------------------------------

        def on_generate(pr, se, ra, st, cf, et, fr, mo, request: gr.Request,
                        progress=gr.Progress()):  # fmt: skip
            s = settings(pr, se, ra, st, cf, et, fr, mo)
            return clip_outputs(run(request, progress, "generate", lambda w: studio.generate(s, w)))

        def on_compare(pr, se, ra, st, cf, et, fr, mo, mode, count, other, request: gr.Request,
                       progress=gr.Progress()):  # fmt: skip
            s = settings(pr, se, ra, st, cf, et, fr, mo)
            r = run(request, progress, "compare", lambda w: studio.compare(
                s, count, other if mode == "models" else None, w))  # fmt: skip
            return (str(path(r.files["grid"])), verdict_markdown(r), str(path(r.files["sheet"])),
                    r.settings["seed"])  # fmt: skip

        def on_denoise(pr, se, ra, st, cf, et, fr, mo, show, request: gr.Request,
                       progress=gr.Progress()):  # fmt: skip
            s = settings(pr, se, ra, st, cf, et, fr, mo)
            r = run(request, progress, "denoise", lambda w: studio.denoise(s, show, w))
            return (str(path(r.files["strip"])), str(path(r.files["mp4"])), verdict_markdown(r),
                    r.settings["seed"])  # fmt: skip

        def on_upload(file, model_name):
            """Check an upload at once; a refused file is taken off the page, its reason shown."""
            if not file:
                return gr.update(), None, "No file.", {}
            try:
                u = studio.read_upload(file, Path(file).name, model_name or SHIPPED)
            except StudioError as e:
                return None, None, f"**Refused:** {e}", {}
            what = "an image to animate" if u.kind == "image" else (
                f"a clip of {len(u.frames)} frames to extend")  # fmt: skip
            state = {"digest": u.digest, "kind": u.kind}
            big = u.frames[0].repeat(4, axis=0).repeat(4, axis=1)  # pixels visible, not blurred
            return gr.update(), big, f"Accepted: {what}.", state

        def on_animate(pr, se, ra, st, cf, et, fr, mo, state, extend, request: gr.Request,
                       progress=gr.Progress()):  # fmt: skip
            s = settings(pr, se, ra, st, cf, et, fr, mo)
            if not state:
                raise refuse("upload an image or a clip first (or its upload was refused)")
            ref = state["digest"]
            image, clip = (ref, None) if state["kind"] == "image" else (None, ref)
            r = run(request, progress, state["kind"], lambda w: studio.generate(
                s, w, image=image, clip=clip, extend=extend))  # fmt: skip
            return clip_outputs(r)

        def shot_rows(shots: ShotList, run_seed: int) -> list[list]:
            """The editable table: each shot's own seed, else the one it is drawn with."""
            return [[s.id, s.prompt, s.duration, run_seed + i if s.seed is None else s.seed]
                    for i, s in enumerate(shots.shots)]  # fmt: skip

        def on_write(premise_text, n, secs, seed_v, rand_v, model_name, request: gr.Request,
                     progress=gr.Progress()):  # fmt: skip
            if rand_v:
                seed_v = secrets.randbelow(MAX_SEED + 1)
            rid, shots = run(request, progress, "story", lambda w: studio.story_shots(
                premise_text, n, secs, seed_v, model_name or SHIPPED))  # fmt: skip
            ids = [s.id for s in shots.shots]
            return rid, shot_rows(shots, int(seed_v)), gr.update(choices=ids, value=ids[0]), seed_v

        def film_outputs(r: Result):
            rows = shot_rows(load(ShotList, path(r.files["shots"])), r.settings["seed"])
            return (str(path(r.files["film"])), str(path(r.files["storyboard"])),
                    verdict_markdown(r), rows)  # fmt: skip

        def on_film(rid, rows, request: gr.Request, progress=gr.Progress()):
            if not rid:
                raise refuse("write the shot list first")
            r = run(request, progress, "story", lambda w: studio.story_film(rid, rows, watch=w))
            return film_outputs(r)

        def on_redraw(rid, rows, shot_id, request: gr.Request, progress=gr.Progress()):
            if not rid:
                raise refuse("write the shot list and draw the film first")
            r = run(request, progress, "story", lambda w: studio.story_film(
                rid, rows, redraw=shot_id or "", watch=w))  # fmt: skip
            return film_outputs(r)

        def thumb(e: dict) -> str:
            f = e["files"]
            return str(path(f.get("gif") or f.get("sheet") or f.get("storyboard")))

        def caption(e: dict) -> str:
            grades = [Grade(**c["grade"]) for c in e.get("clips", [])]
            marks = "".join(ICON[g.matches] for g in grades)
            s = e["settings"]
            what = s.get("prompt") or s.get("premise", "")
            return f"{marks} {e['kind']}: {what[:60]}"

        def on_gallery():
            entries = studio.store.entries()[:60]
            return [(thumb(e), caption(e)) for e in entries], [e["id"] for e in entries]

        def on_select(ids, evt: gr.SelectData):
            rid = ids[evt.index]
            e = studio.store.entry(rid)
            rows = " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in e["settings"].items())
            grades = [f"- {ICON[Grade(**c['grade']).matches]} {c['label']}: {Grade(**c['grade']).verdict}"
                      for c in e["clips"]]  # fmt: skip
            text = f"**{e['kind']}** `{rid}`, {e['seconds']} s\n\n{rows}\n\n" + "\n".join(grades)
            return rid, text

        def on_rerun(rid, request: gr.Request, progress=gr.Progress()):
            if not rid:
                raise refuse("pick a result in the gallery first")
            r = run(request, progress, "re-run", lambda w: studio.rerun(rid, w))
            video = r.files.get("mp4") or r.files.get("grid") or r.files.get("film")
            return str(path(video)), verdict_markdown(r)

        def on_unload(request: gr.Request):
            sessions.close(request.session_hash or "")

        job = {"concurrency_id": "jobs", "concurrency_limit": jobs}
        gen.click(on_generate, common, [gen_video, gen_verdict, gen_files, seed], **job)
        cmp.click(on_compare, [*common, cmp_mode, cmp_count, cmp_other],
                  [cmp_grid, cmp_verdict, cmp_sheet, seed], **job)  # fmt: skip
        dn.click(on_denoise, [*common, dn_show], [dn_strip, dn_video, dn_verdict, seed], **job)
        up_file.upload(on_upload, [up_file, model], [up_file, up_preview, up_message, up_state])
        up.click(on_animate, [*common, up_state, up_extend],
                 [up_video, up_verdict, up_files, seed], **job)  # fmt: skip
        write.click(on_write, [premise, n_shots, shot_s, seed, rand, model],
                    [story_id, table, which, seed], **job)  # fmt: skip
        film_btn.click(on_film, [story_id, table], [film, board, story_verdict, table], **job)
        redraw.click(
            on_redraw, [story_id, table, which], [film, board, story_verdict, table], **job
        )
        gallery_tab.select(on_gallery, None, [gallery, gal_ids])
        gallery.select(on_select, [gal_ids], [gal_sel, gal_info])
        gal_run.click(on_rerun, [gal_sel], [gal_video, gal_verdict], **job)
        demo.unload(on_unload)
    return demo


def launch(cfg: StudioConfig, block: bool = True) -> tuple[Any, str, Studio, Sessions]:
    """Start the server; returns (blocks, url, studio, sessions). ``block``: serve until Ctrl+C."""
    t0 = time.time()
    out = Path(cfg.out).resolve()
    jobs = cfg.jobs or os.cpu_count() or 1
    if jobs < 1 or cfg.queue < 1 or not 0 < cfg.max_upload_mb <= 100:
        raise StudioError("--jobs and --queue must be >= 1, --max-upload-mb in (0, 100]")
    studio = Studio(out, model_names([Path(m) for m in cfg.models]), cfg.max_upload_mb)
    # one core per job: torch's threads are shared by the jobs that run at once
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no telemetry, no version check
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["GRADIO_TEMP_DIR"] = str(out / ".gradio")  # uploads and served copies
    import gradio as gr

    sessions = Sessions()
    demo = build(studio, jobs, sessions)
    demo.queue(max_size=cfg.queue, default_concurrency_limit=jobs)
    try:
        _, url, _ = demo.launch(
            server_name=cfg.host, server_port=cfg.port, prevent_thread_lock=True, show_error=True,
            max_file_size=studio.max_bytes, allowed_paths=[str(out)], ssr_mode=False,
            mcp_server=False, quiet=True, theme=gr.themes.Default(), css=CSS,
        )  # fmt: skip
    except OSError as e:
        raise StudioError(
            f"cannot serve on {cfg.host}:{cfg.port}: the port is taken or not allowed; "
            "pass another --port"
        ) from e
    # the default model loads after the page is up: a first job waits for it, startup does not
    threading.Thread(target=studio.pipeline, args=(SHIPPED,), daemon=True).start()
    print(f"nanosora studio: {url} (started in {time.time() - t0:.1f} s; output folder {out}; "
          f"{jobs} job(s) at once)", flush=True)  # fmt: skip
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: the studio listens on {cfg.host}: other machines can reach it", flush=True)
    if block:
        try:
            demo.block_thread()
        finally:
            demo.close()
    return demo, url, studio, sessions


def main(cfg: StudioConfig) -> None:
    """`nanosora studio`: serve until interrupted."""
    launch(cfg, block=True)
