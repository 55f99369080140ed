"""Generation speed of the shipped model vs an equally sized diffusers Latte loop, same run.

What is timed: one 17x64x64 clip, 25 Euler steps with classifier-free guidance (a batch of 2
through the transformer per step), from prompt to decoded frames. The peer is diffusers'
``LatteTransformer3DModel`` sized like our DiT (width, depth, heads, text width, patch 2) run for
the same 25 CFG steps on the same latents — the transformer loop only, so the ratio isolates the
denoiser. Both use the same threads and float32.

    python bench/generate.py [--repeats 5] [--threads 0] [--model DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN kernel selection)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def latte_like(dit_cfg, latent_shape: tuple[int, ...]):
    """A diffusers Latte transformer with our DiT's width, depth, heads and text width."""
    from diffusers import LatteTransformer3DModel

    c, t, h, w = latent_shape
    return LatteTransformer3DModel(
        num_attention_heads=dit_cfg.heads,
        attention_head_dim=dit_cfg.dim // dit_cfg.heads,
        in_channels=c,
        out_channels=c,
        # Latte alternates spatial and temporal blocks: half as many of each gives equal depth.
        num_layers=max(1, dit_cfg.depth // 2),
        cross_attention_dim=dit_cfg.dim,
        sample_size=h,
        patch_size=dit_cfg.patch_hw,
        norm_type="ada_norm_single",
        num_embeds_ada_norm=1000,
        caption_channels=dit_cfg.text_dim,
        video_length=t,
    ).eval()


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

    from nanosora.generate import Pipeline

    pipe = Pipeline.load(args.model)
    shape = pipe.vae.latent_shape(17, 64, 64)
    prompt = ["a red circle moving left"]

    with torch.inference_mode():
        ours = timed(lambda: pipe.generate(prompt, seed=0, steps=args.steps), args.repeats)

        latte = latte_like(pipe.dit.cfg, shape)
        text, mask = pipe.text_encoder(prompt + [""])
        # Latte takes (B, c, t, h, w) like ours; the text goes through its caption projection.
        z = torch.randn(2, *shape)

        def latte_loop() -> None:
            x = z
            for i in range(args.steps):
                step = torch.full((2,), 999 - i * (1000 // args.steps))
                # No text mask: Latte repeats the text per frame but not its mask (a shape error);
                # the padding it would hide is a couple of tokens and does not change the cost.
                v = latte(
                    x,
                    timestep=step,
                    encoder_hidden_states=text,
                    return_dict=False,
                )[0]
                x = x - v / args.steps

        peer = timed(latte_loop, args.repeats)

        def ours_loop() -> None:
            x = z
            for i in range(args.steps):
                s = torch.full((2,), 1.0 - i / args.steps)
                x = x - pipe.dit(x, s, text, mask) / args.steps

        ours_dit = timed(ours_loop, args.repeats)

    n_ours = pipe.dit.num_params() / 1e6
    n_peer = sum(p.numel() for p in latte.parameters()) / 1e6
    print(
        f"threads: {torch.get_num_threads()}, {args.steps} steps with CFG, latents {tuple(shape)}"
    )
    print(f"nanosora generate (text -> frames, end to end): {ours:.3f} s per clip")
    print(f"nanosora DiT loop ({n_ours:.1f}M params):        {ours_dit:.3f} s")
    print(f"diffusers Latte loop ({n_peer:.1f}M params):     {peer:.3f} s")
    print(f"ratio Latte / nanosora DiT loop: {peer / ours_dit:.2f}x")


if __name__ == "__main__":
    main()
