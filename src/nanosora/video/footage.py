"""Natural-looking long videos for trying the real-video path where no footage can be fetched.

Nothing may be downloaded here, and no installed package ships a video, but matplotlib ships real
pictures: a photograph (``grace_hopper.jpg``, 512x600) and a digital elevation model of terrain
near Jacksboro, Tennessee (``jacksboro_fault_dem.npz``), which hillshading turns into an aerial
view. ``write_footage`` films them with a virtual camera, so the frames hold real textures and
real-camera artefacts rather than flat synthetic shapes:

1. every long video is a run of 3-5 *shots* with hard cuts between them; a shot pans, tilts,
   zooms in or out (eased, not linear) over one scene, with handheld jitter (a smoothed random
   walk), an exposure drift, a colour cast per shot, a vignette and sensor noise per frame;
2. videos come in mixed aspect ratios (16:9, 9:16, 4:3, 1:1), frame rates (24, 25, 30) and
   lengths, and some shots are shorter than a second (they only fit image buckets);
3. the manifest has one row per shot: the long video's ``path``, the shot's ``start``/``end`` in
   seconds, a ``text`` caption and 3 ``captions`` that say what the camera does over what scene.

``nanosora clips`` then cuts the shots out, as it would for Panda-70M or InternVid timestamps.
Run ``python -m nanosora.video.footage --out DIR`` (see ``--help``).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from nanosora.atomic import atomic_path
from nanosora.video.io import write_video

SIZES = ((144, 256), (256, 144), (144, 192), (176, 176))  # (H, W): 16:9, 9:16, 4:3, 1:1
RATES = (24.0, 25.0, 30.0)
MOVES = {  # name -> (start (x, y, zoom), end (x, y, zoom)); x, y in [0, 1] of the scene
    "pans right": ((0.3, 0.5, 0.55), (0.7, 0.5, 0.55)),
    "pans left": ((0.7, 0.5, 0.55), (0.3, 0.5, 0.55)),
    "tilts down": ((0.5, 0.3, 0.55), (0.5, 0.7, 0.55)),
    "tilts up": ((0.5, 0.7, 0.55), (0.5, 0.3, 0.55)),
    "zooms in": ((0.5, 0.45, 0.95), (0.5, 0.4, 0.4)),
    "zooms out": ((0.5, 0.4, 0.4), (0.5, 0.45, 0.95)),
}


@dataclass(frozen=True)
class Scene:
    """A still picture the camera films, and how captions name it."""

    name: str
    image: np.ndarray  # (H, W, 3) float32 in [0, 255]
    subjects: tuple[str, ...]


def scenes() -> list[Scene]:
    """The real pictures matplotlib ships: a portrait photograph and hillshaded terrain."""
    import matplotlib
    from matplotlib.colors import LightSource

    data = Path(matplotlib.get_data_path()) / "sample_data"
    photo = cv2.cvtColor(cv2.imread(str(data / "grace_hopper.jpg")), cv2.COLOR_BGR2RGB)
    dem = np.load(data / "jacksboro_fault_dem.npz")["elevation"].astype(np.float64)
    shaded = LightSource(azdeg=315, altdeg=45).shade(
        dem, cmap=matplotlib.colormaps["gist_earth"], blend_mode="soft", vert_exag=0.05
    )
    terrain = cv2.resize((shaded[..., :3] * 255).astype(np.float32), (806, 688))
    return [
        Scene(
            "portrait",
            photo.astype(np.float32),
            (
                "a portrait of a woman in a naval uniform",
                "an old photograph of Grace Hopper",
                "a woman in uniform in front of a flag",
            ),
        ),
        Scene(
            "terrain",
            terrain,
            (
                "an aerial view of forested hills and valleys",
                "a shaded relief map of mountain ridges",
                "hilly terrain seen from above",
            ),
        ),
    ]


def _ease(u: np.ndarray) -> np.ndarray:
    """Smoothstep: a camera operator starts and stops gently."""
    return u * u * (3 - 2 * u)


def film_shot(
    scene: Scene, move: str, size: tuple[int, int], frames: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (T, H, W, 3): the camera doing ``move`` over ``scene`` (module docstring, step 1)."""
    h, w = size
    sh, sw = scene.image.shape[:2]
    (x0, y0, z0), (x1, y1, z1) = MOVES[move]
    u = _ease(np.linspace(0.0, 1.0, frames))
    jitter = np.cumsum(rng.normal(0, 1.0, (frames, 2)), axis=0)
    jitter = cv2.GaussianBlur(jitter.astype(np.float32), (1, 9), 0) * 0.8  # smooth handheld shake
    gain = np.linspace(1.0, rng.uniform(0.8, 1.2), frames)  # exposure drift
    cast = rng.uniform(0.9, 1.1, 3).astype(np.float32)  # per-shot white balance
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 1 - 0.35 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5)
    out = np.empty((frames, h, w, 3), np.uint8)
    for i in range(frames):
        cx, cy = (x0 + (x1 - x0) * u[i]) * sw, (y0 + (y1 - y0) * u[i]) * sh
        zoom = z0 + (z1 - z0) * u[i]
        scale = zoom * min(sw / w, sh / h)  # source pixels per output pixel
        cx = float(np.clip(cx, scale * w / 2, sw - scale * w / 2))  # the view stays in the scene
        cy = float(np.clip(cy, scale * h / 2, sh - scale * h / 2))
        matrix = np.float32(
            [[scale, 0, cx - scale * w / 2 + jitter[i, 0]],
             [0, scale, cy - scale * h / 2 + jitter[i, 1]]]
        )  # fmt: skip
        frame = cv2.warpAffine(
            scene.image, matrix, (w, h), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )  # fmt: skip
        frame = frame * cast * gain[i] * vignette[..., None]
        frame += rng.normal(0, 2.5, frame.shape).astype(np.float32)  # sensor noise
        out[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return out


def write_footage(
    out_dir: str | Path,
    videos: int = 8,
    seed: int = 0,
    sizes: tuple[tuple[int, int], ...] = SIZES,
) -> Path:
    """Write ``videos`` long mp4s of 3-5 shots each and a manifest of the shots; returns the
    manifest's path (``out_dir/manifest.parquet``). Video v is ``sizes[v % len(sizes)]``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    world = scenes()
    rows = []
    for v in range(videos):
        size, fps = sizes[v % len(sizes)], RATES[v % len(RATES)]
        shots, t = [], 0
        for k in range(int(rng.integers(3, 6))):
            scene = world[int(rng.integers(len(world)))]
            move = list(MOVES)[int(rng.integers(len(MOVES)))]
            seconds = rng.uniform(0.5, 1.0) if rng.random() < 0.2 else rng.uniform(1.5, 4.0)
            n = max(2, round(seconds * fps))
            shots.append(film_shot(scene, move, size, n, rng))
            subject = scene.subjects[int(rng.integers(len(scene.subjects)))]
            captions = [
                f"the camera {move} over {subject}",
                f"{subject}, camera {move}",
                f"{subject[0].upper()}{subject[1:]} as the camera slowly {move}.",
            ]
            rows.append({
                "path": f"video{v:02d}.mp4", "start": t / fps, "end": (t + n) / fps,
                "text": captions[0], "captions": captions, "source": "footage",
                "source_id": f"video{v:02d}#{k}", "scene": scene.name, "move": move,
            })  # fmt: skip
            t += n
        write_video(out / f"video{v:02d}.mp4", np.concatenate(shots), fps=fps, crf=20)
    manifest = out / "manifest.parquet"
    with atomic_path(manifest) as tmp:
        pd.DataFrame(rows).to_parquet(tmp, index=False)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the mp4s and manifest.parquet")
    parser.add_argument("--videos", type=int, default=8, help="long videos to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = write_footage(args.out, args.videos, args.seed)
    print(f"{len(pd.read_parquet(path))} shots in {args.videos} videos: {path}")


if __name__ == "__main__":
    main()
