"""Generation speed of the shipped model vs an equally sized diffusers Latte loop, same run.

What is timed:
1. one 17x64x64 clip end to end (prompt -> decoded frames) with the pipeline's settings, and,
   when the pipeline has a few-step transformer (``nanosora train distill``), at 4 and 2 steps;
2. the denoiser loop alone: 25 classifier-free-guided steps (a batch of 2 through the
   transformer per step) on the same latents, ours vs diffusers' ``LatteTransformer3DModel``
   sized to our parameter count (its head width is chosen so the counts match; both printed),
   at the shipped token count and at 4x the tokens (a 128x128 clip's latents). Latte patches
   space only, so against a DiT with temporal patches it runs more tokens (both printed). Our
   loop encodes the text once per clip (``VideoDiT.encode_text``) as the pipeline does; Latte's
   runs its caption projection every step, as diffusers does. Same threads, float32, inference
   mode.

3. with ``--profile``: where one CFG forward's time goes, at the shipped and 4x token counts;
4. with ``--compile``: the shipped-size loop with the DiT under ``torch.compile`` (inductor),
   its compile time, and how many clips it takes to earn that time back.

    python bench/generate.py [--repeats 5] [--threads 0] [--steps 25] [--model DIR]
                             [--profile] [--compile]
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


def interleaved(fns: tuple, repeats: int) -> tuple[list[float], float]:
    """Median seconds of each function and the median of the per-round ratios second / first,
    the functions timed in alternation, so that the machine's drift hits both alike."""
    for fn in fns:
        fn()  # warm-up
    rounds = []
    for _ in range(repeats):
        times = []
        for fn in fns:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        rounds.append(times)
    medians = [statistics.median(r[i] for r in rounds) for i in range(len(fns))]
    return medians, statistics.median(r[1] / r[0] for r in rounds)


def denoiser_loops(
    pipe: Pipeline, shape, steps: int, repeats: int
) -> tuple[float, float, float, int]:
    """Seconds of our and Latte's 25-step CFG loops on (2, *shape) latents (timed in
    alternation), the median per-round ratio Latte / ours, and Latte's size."""
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

    (ours, peer), ratio = interleaved((ours_loop, latte_loop), repeats)
    return ours, peer, ratio, count(latte)


def profile_forward(pipe: Pipeline, label: str, scale: int) -> None:
    """Shares of one CFG forward (batch 2) by component, from torch's profiler with a scope per
    module kind; "kernels" is the time inside aten ops, the rest of the wall time is Python and
    dispatch overhead."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from nanosora.models.dit import CrossAttention, SelfAttention

    c, dit = pipe.cfg, pipe.dit
    shape = pipe.vae.latent_shape(c.num_frames, c.height * scale, c.width * scale)
    text, mask = pipe.text_encoder(["a red circle moving left", ""])
    context = dit.encode_text(text, mask)
    z, s = torch.randn(2, *shape), torch.full((2,), 0.5)
    kinds = {"self-attention (qkv, QK-norm, RoPE, attention, proj)": SelfAttention,
             "cross-attention (q, attention, proj)": CrossAttention}  # fmt: skip
    scopes = {}
    for block in dit.blocks:
        for name, kind in kinds.items():
            scopes[next(m for m in block.modules() if isinstance(m, kind))] = name
        scopes[block.mlp] = "MLP"
        scopes[block.ada] = "adaLN projections"
        for norm in (block.norm1, block.norm2, block.norm3):
            scopes[norm] = "layer norms"
    handles = []
    for module, name in scopes.items():

        def enter(m, args, name=name):
            m._scope = record_function(name)
            m._scope.__enter__()

        def leave(m, args, out):
            m._scope.__exit__(None, None, None)

        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    for _ in range(3):
        dit(z, s, context)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for _ in range(10):
            dit(z, s, context)
        wall = (time.perf_counter() - t0) / 10
    for h in handles:
        h.remove()
    events = prof.key_averages()
    shares = {e.key: e.cpu_time_total / 10 / 1e6 for e in events if e.key in set(scopes.values())}
    kernels = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 10 / 1e6
    blocks = sum(shares.values())
    print(f"{label}: one CFG forward {1e3 * wall:.1f} ms (under the profiler)")
    for name, sec in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<55} {100 * sec / wall:5.1f}%")
    rest = wall - blocks
    print(f"  {'modulation, gated residuals, embeddings, output':<55} {100 * rest / wall:5.1f}%")
    print(
        f"  time inside aten kernels: {100 * kernels / wall:.0f}%; the rest is Python and dispatch"
    )


def compiled_loop(pipe: Pipeline, steps: int, repeats: int) -> None:
    """Eager vs ``torch.compile``d DiT on the shipped-size CFG loop; compile time and break-even."""
    c = pipe.cfg
    shape = pipe.vae.latent_shape(c.num_frames, c.height, c.width)
    text, mask = pipe.text_encoder(["a red circle moving left", ""])
    context = pipe.dit.encode_text(text, mask)
    z = torch.randn(2, *shape)

    def loop(dit) -> None:
        x = z
        for i in range(steps):
            x = x - dit(x, torch.full((2,), 1.0 - i / steps), context) / steps

    eager = timed(lambda: loop(pipe.dit), repeats)
    compiled = torch.compile(pipe.dit, dynamic=False)
    t0 = time.perf_counter()
    compiled(z, torch.full((2,), 0.5), context)  # compiles
    compile_s = time.perf_counter() - t0
    fast = timed(lambda: loop(compiled), repeats)
    gain = eager - fast
    even = f"{compile_s / gain:.0f} clips to earn it back" if gain > 0 else "never pays"
    print(
        f"torch.compile, {steps} CFG steps at shipped tokens: eager {eager:.3f} s, compiled "
        f"{fast:.3f} s ({eager / fast:.2f}x) after {compile_s:.1f} s of compiling: {even}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--model", default=None, help="pipeline dir (default: the shipped model)")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd loops")
    ap.add_argument("--profile", action="store_true", help="time by DiT component")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pipe = Pipeline.load(args.model)
    c = pipe.cfg
    print(f"threads: {torch.get_num_threads()}; our DiT: {count(pipe.dit) / 1e6:.2f}M parameters")
    with torch.inference_mode():
        few = [n for n in (4, 2) if pipe.serves_few_step(n)]
        for steps in [c.steps, *few]:
            clip = timed(
                lambda n=steps: pipe.generate(["a red circle moving left"], seed=0, steps=n),
                args.repeats,
            )
            kind = "few-step transformer" if steps in few else "teacher, with guidance"
            print(
                f"nanosora generate, {c.num_frames}x{c.height}x{c.width}, {steps} steps ({kind}; "
                f"text -> frames, end to end): {clip:.3f} s per clip"
            )
        for label, scale in (("shipped tokens", 1), ("4x tokens", 2)):
            shape = pipe.vae.latent_shape(c.num_frames, c.height * scale, c.width * scale)
            ours, peer, ratio, n_peer = denoiser_loops(pipe, shape, args.steps, args.repeats)
            t, h, w = pipe.dit.grid(*shape[1:])
            tokens = t * h * w
            # Latte patches space only: with temporal patches ours sees fewer tokens than it.
            peer_tokens = shape[1] * h * w
            print(
                f"{label} ({tokens} per clip), {args.steps} CFG steps: nanosora {ours:.3f} s, "
                f"Latte ({n_peer / 1e6:.2f}M, {peer_tokens} tokens) {peer:.3f} s, ratio Latte / "
                f"nanosora {ratio:.2f}x (median of {args.repeats} alternating rounds)"
            )
        if args.profile:
            for label, scale in (("shipped tokens", 1), ("4x tokens", 2)):
                profile_forward(pipe, label, scale)
        if args.compile:
            compiled_loop(pipe, args.steps, args.repeats)


if __name__ == "__main__":
    main()
