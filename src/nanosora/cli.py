"""`nanosora <command>`: one thin function per stage entry point.

Each command parses its arguments, builds a config, and calls the stage's ``main``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from nanosora import generate as gen
from nanosora import quickstart as qs
from nanosora import story as st
from nanosora import studio as sd
from nanosora.config import (
    DistillConfig,
    DiTTrainConfig,
    PreferenceConfig,
    TextEncoderConfig,
    VAETrainConfig,
    load_config,
)
from nanosora.curate import analyze as an
from nanosora.curate import runner
from nanosora.curate.recipe import RecipeError
from nanosora.data import clips as cl
from nanosora.data import ingest as ing
from nanosora.data.cache import build_cache
from nanosora.data.grounding import build_grounding
from nanosora.data.manifest import mix_manifests, parse_mix_part
from nanosora.evaluate import run
from nanosora.evaluate.compare import compare_reports
from nanosora.evaluate.conditioning import eval_conditioning
from nanosora.evaluate.features import EncoderConfig, train_encoder
from nanosora.evaluate.scenes import bench_scenes, grade_videos
from nanosora.shapes.scenes import CATEGORIES, generate_scenes
from nanosora.shapes.world import generate_dataset
from nanosora.story.chat import ChatConfig
from nanosora.story.montage import MontageConfig
from nanosora.train import distill as distill_trainer
from nanosora.train import distributed as tdist
from nanosora.train import dit as dit_trainer
from nanosora.train import dpo as dpo_trainer
from nanosora.train import vae as vae_trainer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="nanosora: a Sora-style text-to-video system that trains on a CPU in minutes.",
)
train_app = typer.Typer(no_args_is_help=True, help="Train the VAE or the DiT from a YAML config.")
app.add_typer(train_app, name="train")


def _fail(e: Exception) -> NoReturn:
    """Print a user error without a traceback and exit non-zero."""
    typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError)

# --cfg of every command that samples (generate, story, bench-scenes)
CfgScale = Annotated[float | None, typer.Option("--cfg", help="classifier-free guidance scale")]


@app.command()
def generate(
    prompt: Annotated[str | None, typer.Argument(help="what to generate")] = None,
    out: Annotated[
        Path, typer.Option("-o", "--out", help="output mp4 (a folder with --prompts)")
    ] = Path("out.mp4"),
    model: Annotated[
        Path | None, typer.Option(help="pipeline dir; default: the shipped shapes model")
    ] = None,
    seed: Annotated[int, typer.Option(help="noise seed (same seed, same video)")] = 0,
    steps: Annotated[
        int | None, typer.Option(help="sampling steps (default: the pipeline's)")
    ] = None,
    cfg: CfgScale = None,
    num_frames: Annotated[int | None, typer.Option(help="frames, 4k+1")] = None,
    eta: Annotated[
        float | None,
        typer.Option(
            help="noise renewed per step, 0-1 (0: deterministic; default: the pipeline's)"
        ),
    ] = None,
    prompts: Annotated[Path | None, typer.Option(help="text file, one prompt per line")] = None,
    image: Annotated[
        Path | None, typer.Option(help="first frame to animate (image-to-video)")
    ] = None,
    video: Annotated[Path | None, typer.Option(help="clip to continue (with --extend)")] = None,
    extend: Annotated[int, typer.Option(help="frames to add after --video")] = 0,
    lora: Annotated[
        Path | None, typer.Option(help="LoRA adapter directory (a run's lora/) to apply")
    ] = None,
) -> None:
    """Text to video: `nanosora generate "a red circle moving left" -o out.mp4`.

    Image to video: add `--image first.png`. Extension: `--video clip.mp4 --extend 16`.
    """
    if image is not None and video is not None:
        _fail(ValueError("give --image or --video, not both"))
    if (video is None) != (extend == 0):
        _fail(ValueError("--video and --extend K (K > 0) go together"))
    if prompts is not None:
        if not prompts.is_file():
            _fail(FileNotFoundError(f"prompt file {prompts} not found"))
        items = [line.strip() for line in prompts.read_text().splitlines() if line.strip()]
        if not items:
            _fail(ValueError(f"prompt file {prompts} has no prompts"))
    elif prompt is None:
        _fail(ValueError("give a PROMPT or --prompts FILE"))
    else:
        items = [prompt]
    try:
        gen.main(
            items,
            out,
            model,
            seed,
            steps,
            cfg,
            num_frames,
            image=image,
            video=video,
            extend=extend,
            lora=lora,
            eta=eta,
        )
    except USER_ERRORS as e:
        _fail(e)


@app.command()
def shapes(
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    num: Annotated[int, typer.Option("--num", help="number of clips")] = 1000,
    seed: Annotated[int, typer.Option(help="dataset seed")] = 0,
    split: Annotated[
        str, typer.Option(help="train (no held-out compositions), heldout or all")
    ] = "train",
    workers: Annotated[int, typer.Option(help="processes")] = 2,
    shapes: Annotated[
        str | None,
        typer.Option(help="only these shapes, comma-separated, e.g. 'diamond' (a new concept)"),
    ] = None,
) -> None:
    """Write a shapes-world dataset: mp4 clips + manifest.parquet."""
    if split not in ("train", "heldout", "all"):
        _fail(ValueError(f"--split must be train, heldout or all, not {split!r}"))
    only = tuple(s.strip() for s in shapes.split(",") if s.strip()) if shapes else None
    try:
        path = generate_dataset(out, num, seed=seed, split=split, workers=workers, shapes=only)  # type: ignore[arg-type]
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"wrote {num} clips to {path / 'manifest.parquet'}")


@app.command()
def mix(
    manifests: Annotated[
        list[str], typer.Argument(help="manifests, each PATH or PATH:N (its first N rows)")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="manifest: .parquet, .csv or .jsonl")],
    seed: Annotated[int, typer.Option(help="shuffle seed")] = 0,
) -> None:
    """Mix manifests into one (a new concept's clips beside replayed ones): paths made absolute,
    rows shuffled."""
    try:
        parts = [parse_mix_part(m) for m in manifests]
        path, counts = mix_manifests(parts, out, seed=seed)
    except USER_ERRORS as e:
        _fail(e)
    taken = ", ".join(f"{n} from {p}" for (p, _), n in zip(parts, counts))
    typer.echo(f"wrote {sum(counts)} rows to {path} ({taken})")


@train_app.command("vae")
def train_vae(
    config: Annotated[Path | None, typer.Option("--config", help="YAML experiment")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="dotted overrides, e.g. optim.lr=1e-4")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in train.out_dir")] = False,
) -> None:
    """Train the causal video VAE."""
    try:
        vae_trainer.main(load_config(VAETrainConfig, config, overrides or []), resume=resume)
        tdist.exit_if_launched()
    except USER_ERRORS as e:
        _fail(e)


@train_app.command("dit")
def train_dit(
    config: Annotated[Path | None, typer.Option("--config", help="YAML experiment")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="dotted overrides, e.g. optim.lr=1e-4")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in train.out_dir")] = False,
) -> None:
    """Train the video DiT from a latent cache."""
    try:
        dit_trainer.main(load_config(DiTTrainConfig, config, overrides or []), resume=resume)
        tdist.exit_if_launched()
    except USER_ERRORS as e:
        _fail(e)


@train_app.command("export")
def train_export(
    run: Annotated[Path, typer.Argument(help="DiT run directory (train.out_dir)")],
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="pipeline directory (default: RUN/snapshots/step_N)"),
    ] = None,
) -> None:
    """A pipeline from a DiT run's EMA weights, also while it trains (its last checkpoint)."""
    try:
        _, written = dit_trainer.export(run, out)
        typer.echo(f"pipeline written to {written}")
    except USER_ERRORS as e:
        _fail(e)


@train_app.command("distill")
def train_distill(
    config: Annotated[Path | None, typer.Option("--config", help="YAML experiment")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="dotted overrides, e.g. train.minutes=20")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in train.out_dir")] = False,
) -> None:
    """Distil a pipeline's transformer into a few-step one (reflow on the teacher's samples)."""
    try:
        distill_trainer.main(load_config(DistillConfig, config, overrides or []), resume=resume)
    except USER_ERRORS as e:
        _fail(e)


@train_app.command("dpo")
def train_dpo(
    config: Annotated[Path | None, typer.Option("--config", help="YAML experiment")] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="dotted overrides, e.g. model=runs/x/pipeline")
    ] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in train.out_dir")] = False,
) -> None:
    """Fine-tune a scenes pipeline on its own clips as the grader judges them (Diffusion-DPO)."""
    try:
        dpo_trainer.main(load_config(PreferenceConfig, config, overrides or []), resume=resume)
    except USER_ERRORS as e:
        _fail(e)


def _bucket(text: str) -> tuple[int, int, int]:
    """'17x64x112' -> (17, 64, 112)."""
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--bucket {text!r} is not TxHxW, e.g. 17x64x112")
    t, h, w = (int(p) for p in parts)
    return t, h, w


@app.command()
def cache(
    manifest: Annotated[Path, typer.Option(help="clips to encode")],
    vae: Annotated[Path, typer.Option(help="trained VAE run directory")],
    out: Annotated[Path, typer.Option("-o", "--out", help="cache directory")],
    num_frames: Annotated[int, typer.Option(help="frames per clip, 4k+1")] = 17,
    size: Annotated[int, typer.Option(help="frame height and width")] = 64,
    fps: Annotated[float, typer.Option(help="frames per second")] = 8.0,
    bucket: Annotated[
        list[str] | None,
        typer.Option(
            help="TxHxW bucket, repeatable (e.g. 17x64x112 17x64x64 1x64x64): each clip "
            "is cached at the nearest aspect it fills; DiT batches are one shape each"
        ),
    ] = None,
    crop: Annotated[
        str, typer.Option(help="none (resize only) or center (crop to the aspect)")
    ] = "none",
    unfit: Annotated[
        str, typer.Option(help="clips no bucket holds: error or drop (logged)")
    ] = "error",
    caption: Annotated[
        str, typer.Option(help="text, or random: keep every caption (`captions` column)")
    ] = "text",
    text_layers: Annotated[
        str,
        typer.Option(
            help="MiniLM hidden states concatenated per token, e.g. -1,0 (the last layer and the "
            "word embeddings; the DiT then needs text.layers=[-1,0] dit.text_dim=768)"
        ),
    ] = "-1",
    clauses: Annotated[
        int,
        typer.Option(
            help="clause tokens per caption after its word tokens (the DiT then needs "
            "text.clauses=N)"
        ),
    ] = 0,
    clause_split: Annotated[
        str,
        typer.Option(
            help="conjunctions, or relations: also cut after a place preposition ('a red "
            "circle above | a blue square'; the DiT then needs text.clause_split=relations)"
        ),
    ] = "conjunctions",
    latents_from: Annotated[
        Path | None,
        typer.Option(
            help="a cache of the same clips whose latents are copied: only the text is encoded"
        ),
    ] = None,
) -> None:
    """Encode a manifest once into latent + text shards for DiT training (resumable)."""
    try:
        buckets = [_bucket(b) for b in bucket or []]
        try:
            layers = tuple(int(v) for v in text_layers.split(","))
        except ValueError:
            raise ValueError(f"--text-layers {text_layers!r}: expected integers such as -1,0") from None  # fmt: skip
        text = TextEncoderConfig(layers=layers, clauses=clauses, clause_split=clause_split)  # type: ignore[arg-type]
        build_cache(manifest, vae, out, text, num_frames=num_frames, height=size, width=size,
                    fps=fps, buckets=buckets, crop=crop, unfit=unfit, caption=caption,
                    latents_from=latents_from)  # type: ignore[arg-type]  # fmt: skip
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"cache written to {out}")


@app.command()
def ground(
    cache_dir: Annotated[Path, typer.Argument(help="latent cache of a scenes dataset")],
    patch: Annotated[int, typer.Option(help="the DiT's dit.patch_hw")] = 4,
    truth: Annotated[
        Path | None, typer.Option(help="ground truth (default: truth.jsonl beside the manifest)")
    ] = None,
) -> None:
    """Grounding targets for `flow.ground_weight`: where each colour and shape word of every
    cached caption is, on the DiT's token grid (CACHE_DIR/grounding.npy)."""
    try:
        out = build_grounding(cache_dir, patch, truth)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"grounding targets written to {out}")


@app.command()
def quickstart(
    workdir: Annotated[Path, typer.Option(help="where data, runs, model and report go")] = Path(
        "quickstart"
    ),
    budget_minutes: Annotated[
        float,
        typer.Option(help="wall-clock minutes for the whole run, data and evaluation included"),
    ] = 15.0,
    num_clips: Annotated[
        int | None,
        typer.Option(help="training clips to generate (default: shapes 3000, scenes 8000)"),
    ] = None,
    seed: Annotated[int, typer.Option(help="seed for data, init and sampling")] = 0,
    world: Annotated[
        str,
        typer.Option(
            help="shapes (one moving object; adherence report) or scenes (the compositional "
            "world; a subset of its benchmark)"
        ),
    ] = "shapes",
    vae_share: Annotated[
        float | None,
        typer.Option(
            help="share of the training time for the VAE stage, the rest for the DiT "
            "(default: shapes 0.5, scenes 0.3)"
        ),
    ] = None,
    vae_colour: Annotated[
        float,
        typer.Option(
            help="shapes: weight of the VAE stage's mean-object-colour loss (loss.colour)"
        ),
    ] = 0.0,
) -> None:
    """Data -> VAE -> cache -> DiT -> evaluation, end to end on a CPU, within a time budget."""
    try:
        qs.main(
            workdir, budget_minutes, num_clips, seed, world=world, vae_share=vae_share,
            vae_colour=vae_colour,
        )  # fmt: skip
    except USER_ERRORS as e:
        _fail(e)


@app.command("eval")
def evaluate(
    reports: Annotated[
        list[Path] | None, typer.Argument(help="report.json files (with --compare)")
    ] = None,
    out: Annotated[Path, typer.Option("-o", "--out", help="report folder")] = Path("eval"),
    model: Annotated[
        Path | None, typer.Option(help="pipeline dir; default: the shipped model")
    ] = None,
    vae: Annotated[
        Path | None, typer.Option(help="VAE run dir: evaluate reconstruction instead")
    ] = None,
    manifest: Annotated[Path | None, typer.Option(help="clips to reconstruct (with --vae)")] = None,
    videos: Annotated[
        Path | None,
        typer.Option(help="manifest (path, text) of generated clips: evaluate those files"),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="manifest of real clips for the Fréchet distance (default: shapes world)"
        ),
    ] = None,
    encoder: Annotated[
        Path | None, typer.Option(help="shapes-encoder run dir: Fréchet shapes distance")
    ] = None,
    i3d: Annotated[
        Path | None, typer.Option(help="local I3D TorchScript file (i3d_torchscript.pt): FVD")
    ] = None,
    lpips: Annotated[
        Path | None, typer.Option(help="local TorchScript LPIPS-style network (with --vae)")
    ] = None,
    compare: Annotated[
        bool, typer.Option("--compare", help="put REPORTS side by side in OUT/compare.html")
    ] = False,
    train_encoder: Annotated[
        bool, typer.Option("--train-encoder", help="train the shapes encoder into OUT")
    ] = False,
    encoder_steps: Annotated[int, typer.Option(help="steps for --train-encoder")] = 1000,
    max_clips: Annotated[int | None, typer.Option(help="evaluate at most this many clips")] = None,
    seeds: Annotated[int, typer.Option(help="seeds per eval prompt")] = 4,
    steps: Annotated[
        int | None, typer.Option(help="sampling steps (default: the pipeline's)")
    ] = None,
    eta: Annotated[
        float | None,
        typer.Option(help="noise renewed per sampling step, 0-1 (default: the pipeline's)"),
    ] = None,
    conditioning: Annotated[
        Path | None,
        typer.Option(help="shapes manifest: image-to-video and extension from its real clips"),
    ] = None,
    concept: Annotated[
        str | None,
        typer.Option(help="a new shape (e.g. diamond): adherence on it and on the base prompts"),
    ] = None,
    lora: Annotated[Path | None, typer.Option(help="LoRA adapter to apply to --model")] = None,
) -> None:
    """Metrics + report.json/report.html: a model's prompt adherence, temporal quality and Fréchet
    distance; the same for generated files (--videos); a VAE's reconstruction (--vae); or a
    comparison of reports (--compare A/report.json B/report.json); image-to-video and extension
    (--conditioning MANIFEST) or a fine-tuned concept (--concept diamond --lora RUN/lora)."""
    try:
        if compare:
            path = _eval_compare(reports, out)
        elif reports:
            raise ValueError(f"unexpected arguments {[str(r) for r in reports]} (use --compare)")
        elif train_encoder:
            path = _eval_train_encoder(out, encoder_steps)
        elif vae is not None:
            if manifest is None:
                raise ValueError("--vae needs --manifest (the clips to reconstruct)")
            path = run.eval_vae(vae, manifest, out, max_clips=max_clips or 256, lpips=lpips)
        elif videos is not None:
            path = run.eval_videos(videos, out, encoder, i3d, max_clips, reference=reference)
        elif conditioning is not None or concept is not None:
            path = eval_conditioning(
                model, out, manifest=conditioning, concept=concept, lora=lora,
                n=max_clips or 32, seeds=seeds, steps=steps,
            )  # fmt: skip
        else:
            path = run.eval_model(
                model, out, seeds=seeds, steps=steps, encoder=encoder, i3d=i3d,
                reference=reference, eta=eta,
            )  # fmt: skip
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"report: {path}")


def _eval_compare(reports: list[Path] | None, out: Path) -> Path:
    """`nanosora eval --compare A B ...`: the comparison page; returns its path."""
    return compare_reports(list(reports or []), out)[1]


def _eval_train_encoder(out: Path, steps: int) -> Path:
    """`nanosora eval --train-encoder -o DIR`: train the shapes encoder; returns the run dir."""
    run_dir = train_encoder(out, EncoderConfig(steps=steps))
    last = (run_dir / "metrics.jsonl").read_text().splitlines()[-1]
    typer.echo(f"shapes encoder accuracy on clean clips: {json.loads(last)['accuracy']}")
    return run_dir


# ---- data: ingest / clips (real datasets) ---------------------------------------------------


@app.command()
def ingest(
    dataset: Annotated[
        str,
        typer.Argument(
            help="msrvtt, panda70m, videoinstruct, internvid, youku, shot2story, generic, opensora or datajuicer"
        ),
    ],
    annotations: Annotated[
        list[Path],
        typer.Option(
            "--annotations", "-a", help="annotation file as published (repeat for several)"
        ),
    ],
    out: Annotated[
        Path, typer.Option("-o", "--out", help="manifest: .parquet, .csv or .jsonl")
    ] = Path("manifest.parquet"),
    videos: Annotated[
        Path | None,
        typer.Option(
            help="folder of downloaded videos; rows match by path, file name, id or YouTube id"
        ),
    ] = None,
    download_list: Annotated[
        Path | None,
        typer.Option(
            "--download-list",
            help="write what to fetch: .txt URLs (yt-dlp -a), .csv/.jsonl url,id,start,end (video2dataset)",
        ),
    ] = None,
    rows: Annotated[
        str | None,
        typer.Option(help="clip|caption (msrvtt, videoinstruct, youku) or shot|video (shot2story)"),
    ] = None,
    to: Annotated[
        str, typer.Option(help="manifest, opensora (CSV) or datajuicer (jsonl)")
    ] = "manifest",
    column: Annotated[
        list[str] | None,
        typer.Option(help="generic: MANIFEST_COLUMN=FILE_COLUMN, e.g. path=video (repeat)"),
    ] = None,
    meta: Annotated[
        Path | None, typer.Option(help="Shot2Story *_meta.csv, or a Youku-mPLUG label map JSON")
    ] = None,
    strict: Annotated[bool, typer.Option(help="stop at the first malformed record")] = False,
    keep_missing: Annotated[
        bool, typer.Option(help="keep rows whose video is not under --videos")
    ] = False,
    dedup: Annotated[bool, typer.Option(help="reject records whose id was already seen")] = True,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
) -> None:
    """Annotations as a dataset publishes them -> a manifest (+ rejects, missing, summary files)."""
    try:
        pairs = tuple(tuple(c.split("=", 1)) for c in column or [])
        if any(len(p) != 2 for p in pairs):
            raise ValueError(f"--column takes MANIFEST_COLUMN=FILE_COLUMN, got {column}")
        cfg = ing.IngestConfig(
            dataset=dataset, annotations=tuple(annotations), output=out, videos=videos,  # type: ignore[arg-type]
            download_list=download_list, rows=rows, to=to, columns=pairs, meta=meta,  # type: ignore[arg-type]
            strict=strict, keep_missing=keep_missing, dedup=dedup, progress=not quiet,
        )  # fmt: skip
        path = ing.main(cfg)
    except (*USER_ERRORS, ing.IngestError) as e:
        _fail(e)
    typer.echo(str(path))


@app.command()
def clips(
    manifest: Annotated[
        Path, typer.Argument(help="manifest whose rows have start/end inside long videos")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out-dir", "-d", help="folder for the clip files")
    ] = Path("clips"),
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", help="new manifest (default OUT_DIR/manifest.parquet)"),
    ] = None,
    mode: Annotated[
        str, typer.Option(help="auto (copy where frame-exact, else re-encode), copy or reencode")
    ] = "auto",
    crf: Annotated[int, typer.Option(help="libx264 quality of re-encoded clips")] = 18,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
) -> None:
    """Cut each row's [start, end) out of its long video, resumably; write a manifest of clips."""
    try:
        cfg = cl.ClipsConfig(manifest=manifest, out_dir=out_dir, output=out, mode=mode, crf=crf,  # type: ignore[arg-type]
                             progress=not quiet)  # fmt: skip
        path = cl.main(cfg)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(str(path))


# ---- end of data commands ---------------------------------------------------------------------


# ---- story: premise -> film (nanosora.story) --------------------------------------------------


def _film_size(size: str) -> tuple[int, int]:
    """'WxH' -> (width, height)."""
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size takes WIDTHxHEIGHT, e.g. 256x256, not {size!r}") from None
    return w, h


@app.command()
def story(
    premise: Annotated[
        str | None, typer.Argument(help="the story, e.g. 'a red ball falls, then rises'")
    ] = None,
    out: Annotated[
        Path,
        typer.Option("-o", "--out", help="film mp4; work folder, .srt and storyboard go beside it"),
    ] = Path("film.mp4"),
    shots: Annotated[int, typer.Option("--shots", help="number of shots")] = 6,
    shot_seconds: Annotated[float, typer.Option(help="planned seconds per shot")] = 2.0,
    writer: Annotated[
        str, typer.Option(help="offline (deterministic planner) or chat")
    ] = "offline",
    translate: Annotated[
        bool,
        typer.Option(
            "--translate", help="translate non-English premise/prompts via the chat backend"
        ),
    ] = False,
    chat_base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL [env OPENAI_BASE_URL]")
    ] = "",
    chat_model: Annotated[str, typer.Option(help="chat model name [env NANOSORA_CHAT_MODEL]")] = "",
    chat_api_key: Annotated[str, typer.Option(help="API key [env OPENAI_API_KEY]")] = "",
    chat_timeout: Annotated[float, typer.Option(help="seconds per chat request")] = 120.0,
    chat_retries: Annotated[
        int, typer.Option(help="extra tries after a failed request or unusable answer")
    ] = 3,
    model: Annotated[
        Path | None, typer.Option(help="pipeline dir; default: the shipped shapes model")
    ] = None,
    seed: Annotated[int, typer.Option(help="shot i uses seed + i unless shots.json gives one")] = 0,
    steps: Annotated[
        int | None, typer.Option(help="sampling steps (default: the pipeline's)")
    ] = None,
    cfg: CfgScale = None,
    keyframes: Annotated[
        Path | None, typer.Option(help="folder of your keyframes, <shot id>.png/.jpg")
    ] = None,
    rerolls: Annotated[
        int,
        typer.Option(
            help="shapes model: redraw a keyframe or clip the probe disagrees with, up to N times"
        ),
    ] = 2,
    animate: Annotated[
        str,
        typer.Option(help="i2v (each shot from its keyframe), t2v (from its prompt) or auto"),
    ] = "auto",
    size: Annotated[str, typer.Option(help="film WIDTHxHEIGHT (even)")] = "256x256",
    fps: Annotated[float, typer.Option(help="film frames per second")] = 24.0,
    fade: Annotated[
        float, typer.Option(help="cross-fade seconds for shots with transition 'fade'")
    ] = 0.5,
    title_seconds: Annotated[float, typer.Option(help="title card seconds (0: none)")] = 2.0,
    end_seconds: Annotated[float, typer.Option(help="end card seconds (0: none)")] = 1.5,
    burn_subtitles: Annotated[
        bool, typer.Option("--burn-subtitles", help="draw subtitles into the frames too")
    ] = False,
    audio: Annotated[Path | None, typer.Option(help="audio file to lay under the film")] = None,
    stop_after: Annotated[
        str, typer.Option(help="script, shots, keyframes or clips: stop there to edit")
    ] = "",
    resume: Annotated[
        bool, typer.Option("--resume", help="continue the run beside --out, keeping finished shots")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="start over, deleting the earlier run's files")
    ] = False,
) -> None:
    """Premise -> script -> shots -> keyframes -> clips -> film: `nanosora story "PREMISE" -o film.mp4`."""
    try:
        if premise is None and not resume:
            raise ValueError(
                'give a PREMISE, e.g. nanosora story "a red ball falls, then rises" -o film.mp4'
            )
        width, height = _film_size(size)
        config = st.StoryConfig(
            premise=premise or "", out=str(out), num_shots=shots, shot_seconds=shot_seconds,
            writer=writer, translate=translate, stop_after=stop_after, resume=resume, overwrite=overwrite,  # type: ignore[arg-type]
            chat=ChatConfig(base_url=chat_base_url, model=chat_model, api_key=chat_api_key,
                            timeout=chat_timeout, retries=chat_retries),
            render=st.RenderConfig(model=str(model or ""), seed=seed, steps=steps, cfg_scale=cfg,
                                   keyframes=str(keyframes or ""), rerolls=rerolls, animate=animate),  # type: ignore[arg-type]
            montage=MontageConfig(width=width, height=height, fps=fps, fade=fade, title_seconds=title_seconds,
                                  end_seconds=end_seconds, burn_subtitles=burn_subtitles, audio=str(audio or "")),
        )  # fmt: skip
        path = st.main(config)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(str(path))


# ---- end of story commands --------------------------------------------------------------------


# ---- curate / analyze -------------------------------------------------------------------------


@app.command()
def curate(
    recipe: Annotated[Path, typer.Option("--recipe", "-r", help="Data-Juicer-style recipe YAML")],
    engine: Annotated[
        str | None,
        typer.Option(help="local (process pool) or ray; default: the recipe's executor_type"),
    ] = None,
    np: Annotated[
        int | None,
        typer.Option("--np", help="processes / Ray actors (default: recipe's np, else all cores)"),
    ] = None,
    dataset: Annotated[Path | None, typer.Option(help="override the recipe's dataset_path")] = None,
    export: Annotated[Path | None, typer.Option(help="override the recipe's export_path")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar or summary")] = False,
) -> None:
    """Filter, split, score and deduplicate a manifest with a recipe (resumable: rerun after a kill)."""
    try:
        cfg = runner.CurateConfig(recipe=recipe, engine=engine, np=np, dataset=dataset,  # type: ignore[arg-type]
                                  export=export, progress=not quiet)  # fmt: skip
        path = runner.main(cfg)
    except (*USER_ERRORS, RecipeError) as e:
        _fail(e)
    typer.echo(str(path))


@app.command()
def analyze(
    manifest: Annotated[Path | None, typer.Argument(help="manifest with statistic columns")] = None,
    out: Annotated[
        Path, typer.Option("-o", "--out", help="folder for stats, histograms, index.html")
    ] = Path("analysis"),
    recipe: Annotated[
        Path | None, typer.Option(help="compute the recipe's statistics first (drops nothing)")
    ] = None,
    np: Annotated[int | None, typer.Option("--np", help="processes for --recipe")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Statistics of every score column: percentiles, PNG histograms, HTML, 3-sigma thresholds."""
    try:
        path = an.main(out, manifest=manifest, recipe=recipe, np_=np, progress=not quiet)
    except (*USER_ERRORS, RecipeError) as e:
        _fail(e)
    typer.echo(str(path))


# ---- end of curate commands -------------------------------------------------------------------


# ---- scenes: the compositional world and its benchmark (docs/scenes.md) ------------------------


def _categories(text: str | None) -> tuple:
    """'numeracy,spatial' -> ('numeracy', 'spatial'); None -> every category."""
    if not text:
        return CATEGORIES
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    unknown = [c for c in names if c not in CATEGORIES]
    if unknown:
        raise ValueError(f"--category {unknown} unknown; choose from {', '.join(CATEGORIES)}")
    return names


@app.command()
def scenes(
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    num: Annotated[int, typer.Option("--num", help="number of clips")] = 1000,
    category: Annotated[
        str | None, typer.Option(help="comma-separated categories, in turn (default: all)")
    ] = None,
    seed: Annotated[int, typer.Option(help="dataset seed")] = 0,
    split: Annotated[
        str, typer.Option(help="train (no held-out compositions), heldout or all")
    ] = "train",
    workers: Annotated[int, typer.Option(help="processes")] = 2,
    spatial_centre: Annotated[
        float | None,
        typer.Option(
            help="place each spatial pair's midpoint within this many px of the frame's centre "
            "(default: anywhere, as the world does)"
        ),
    ] = None,
) -> None:
    """Write a scenes dataset: mp4 clips, manifest.parquet and the ground truth (truth.jsonl)."""
    try:
        if split not in ("train", "heldout", "all"):
            raise ValueError(f"--split must be train, heldout or all, not {split!r}")
        path = generate_scenes(
            out, num, _categories(category), seed=seed, split=split, workers=workers,
            spatial_centre=spatial_centre,
        )  # type: ignore[arg-type]  # fmt: skip
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"wrote {num} clips to {path / 'manifest.parquet'} (ground truth: truth.jsonl)")


def _interval(text: str | None) -> tuple[float, float] | None:
    """``"LO,HI"`` -> (LO, HI); None stays None."""
    if text is None:
        return None
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        _fail(ValueError(f"--cfg-interval {text!r}: expected two numbers LO,HI such as 0,1"))
    return lo, hi


@app.command("bench-scenes")
def bench_scenes_cmd(
    out: Annotated[Path, typer.Option("-o", "--out", help="folder: videos, prompts, report")],
    model: Annotated[
        Path | None, typer.Option(help="pipeline dir; default: the shipped shapes model")
    ] = None,
    seeds: Annotated[int, typer.Option(help="seeds per prompt")] = 4,
    category: Annotated[str | None, typer.Option(help="comma-separated categories")] = None,
    per_group: Annotated[
        int | None, typer.Option(help="only the first N prompts of each group (a subset)")
    ] = None,
    steps: Annotated[
        int | None, typer.Option(help="sampling steps (default: the pipeline's)")
    ] = None,
    vae: Annotated[
        Path | None,
        typer.Option(
            help="VAE run or pipeline vae/ dir: grade its reconstructions of the world's own "
            "clips instead (the most a DiT on its latents can reach)"
        ),
    ] = None,
    cfg: CfgScale = None,
    cfg_interval: Annotated[
        str | None,
        typer.Option(help="LO,HI: noise levels (LO, HI] where guidance applies (e.g. 0,1)"),
    ] = None,
    eta: Annotated[float | None, typer.Option(help="noise renewed per sampling step, 0-1")] = None,
) -> None:
    """Generate the scenes suite with a model and grade it: OUT/report.json + report.html.

    The sampler options default to the pipeline's settings; a folder keeps its finished clips,
    so give each sampler setting its own OUT."""
    try:
        path = bench_scenes(
            model, out, seeds, _categories(category), per_group, steps, vae=vae, cfg_scale=cfg,
            cfg_interval=_interval(cfg_interval), eta=eta,
        )  # fmt: skip
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"report: {path}")


@app.command()
def grade(
    videos: Annotated[Path, typer.Option(help="folder of videos")],
    prompts: Annotated[
        Path,
        typer.Option(help=".txt (a prompt per video, in name order) or manifest (path, text)"),
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="report folder")] = Path("grade"),
    workers: Annotated[int, typer.Option(help="grading processes")] = 1,
) -> None:
    """Grade any model's videos against their scenes prompts: OUT/report.json + report.html."""
    try:
        path = grade_videos(videos, prompts, out, workers=workers)
    except USER_ERRORS as e:
        _fail(e)
    summary = json.loads(path.read_text())["summary"]["all"]["all"]
    typer.echo(f"{summary['passed']}/{summary['n']} pass; report: {path}")


# ---- end of scenes commands -------------------------------------------------------------------


# ---- studio: the local web app (nanosora.studio) ------------------------------------------------


@app.command()
def studio(
    model: Annotated[
        list[Path] | None,
        typer.Option(help="a pipeline dir besides the shipped model (repeat to add more)"),
    ] = None,
    port: Annotated[int, typer.Option(help="port to serve on")] = 7860,
    host: Annotated[
        str, typer.Option(help="address to listen on; anything but 127.0.0.1 exposes the studio")
    ] = "127.0.0.1",
    out: Annotated[
        Path, typer.Option("-o", "--out", help="output folder: the studio writes only here")
    ] = Path("studio"),
    jobs: Annotated[int, typer.Option(help="jobs run at once (0: one per core)")] = 0,
    queue: Annotated[int, typer.Option(help="jobs that may wait in the queue")] = 32,
    max_upload_mb: Annotated[float, typer.Option(help="largest upload, MB")] = 5.0,
) -> None:
    """A local web app: generate with a graded verdict, compare seeds or models, watch denoising,
    image-to-video and extension from uploads, story to film, a gallery of past results."""
    try:
        cfg = sd.StudioConfig(out=str(out), models=tuple(str(m) for m in model or ()), host=host,
                              port=port, jobs=jobs, queue=queue, max_upload_mb=max_upload_mb)  # fmt: skip
        sd.main(cfg)
    except ModuleNotFoundError as e:
        _fail(ValueError(f"{e}: the studio needs its extra, pip install -e '.[studio]'"))
    except (*USER_ERRORS, OSError) as e:
        _fail(e)


# ---- end of studio command ----------------------------------------------------------------------


if __name__ == "__main__":
    app()
