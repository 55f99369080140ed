"""Generation speed of the shipped model vs an equally sized diffusers Latte loop, same run.

What is timed:
1. one 17x64x64 clip end to end (prompt -> decoded frames) with the pipeline's settings;
2. the denoiser loop alone: 25 classifier-free-guided steps (a batch of 2 through the
   transformer per step) on the same latents, ours vs diffusers' ``LatteTransformer3DModel``
   sized to our parameter count (its head width is chosen so the counts match; both printed),
   at the shipped token count and at 4x the tokens (a 128x128 clip's latents). Our loop encodes
   the text once per clip (``VideoDiT.encode_text``) as the pipeline does; Latte's runs its
   caption projection every step, as diffusers does. Same threads, float32, inference mode.

    python bench/generate.py [--repeats 5] [--threads 0] [--steps 25] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nanosora.pipeline import Pipeline


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def latte_like(dit_cfg, latent_shape: tuple[int, ...], params: int):
    """A diffusers Latte transformer with our depth, heads and text width, its head width chosen
    so that its parameter count is closest to ``params``."""
    from diffusers import LatteTransformer3DModel

    c, t, h, w = latent_shape

    def build(head_dim: int):
        return LatteTransformer3DModel(
            num_attention_heads=dit_cfg.heads,
            attention_head_dim=head_dim,
            in_channels=c,
            out_channels=c,
            # Latte alternates spatial and temporal blocks: half as many of each is equal depth.
            num_layers=max(1, dit_cfg.depth // 2),
            cross_attention_dim=dit_cfg.heads * head_dim,
            sample_size=h,
            patch_size=dit_cfg.patch_hw,
            norm_type="ada_norm_single",
            num_embeds_ada_norm=1000,
            caption_channels=dit_cfg.text_dim,
            video_length=t,
        ).eval()

    with torch.device("meta"):
        sizes = {hd: count(build(hd)) for hd in range(8, 4 * dit_cfg.dim // dit_cfg.heads, 2)}
    return build(min(sizes, key=lambda hd: abs(sizes[hd] - params)))


def denoiser_loops(pipe: Pipeline, shape, steps: int, repeats: int) -> tuple[float, float, int]:
    """Seconds of our and Latte's 25-step CFG loops on (2, *shape) latents; Latte's size."""
    latte = latte_like(pipe.dit.cfg, shape, count(pipe.dit))
    text, mask = pipe.text_encoder(["a red circle moving left", ""])
    z = torch.randn(2, *shape)

    def latte_loop() -> None:
        x = z
        for i in range(steps):
            step = torch.full((2,), 999 - i * (1000 // steps))
            # No text mask: Latte repeats the text per frame but not its mask (a shape error);
            # the padding it would hide is a couple of tokens and does not change the cost.
            v = latte(x, timestep=step, encoder_hidden_states=text, return_dict=False)[0]
            x = x - v / steps

    def ours_loop() -> None:
        context = pipe.dit.encode_text(text, mask)
        x = z
        for i in range(steps):
            s = torch.full((2,), 1.0 - i / steps)
            x = x - pipe.dit(x, s, context) / steps

    return timed(ours_loop, repeats), timed(latte_loop, repeats), count(latte)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--model", default=None, help="pipeline dir (default: the shipped model)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pipe = Pipeline.load(args.model)
    c = pipe.cfg
    print(f"threads: {torch.get_num_threads()}; our DiT: {count(pipe.dit) / 1e6:.2f}M parameters")
    with torch.inference_mode():
        clip = timed(lambda: pipe.generate(["a red circle moving left"], seed=0), args.repeats)
        print(
            f"nanosora generate, {c.num_frames}x{c.height}x{c.width}, {c.steps} steps "
            f"(text -> frames, end to end): {clip:.3f} s per clip"
        )
        for label, scale in (("shipped tokens", 1), ("4x tokens", 2)):
            shape = pipe.vae.latent_shape(c.num_frames, c.height * scale, c.width * scale)
            ours, peer, n_peer = denoiser_loops(pipe, shape, args.steps, args.repeats)
            tokens = shape[1] * (shape[2] // pipe.dit.cfg.patch_hw) ** 2
            print(
                f"{label} ({tokens} per clip), {args.steps} CFG steps: nanosora {ours:.3f} s, "
                f"Latte ({n_peer / 1e6:.2f}M) {peer:.3f} s, ratio Latte / nanosora "
                f"{peer / ours:.2f}x"
            )


if __name__ == "__main__":
    main()
