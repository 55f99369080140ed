"""Model FLOPs utilisation (MFU) of a DiT training step, against this machine's measured peak.

For each preset (and dtype) it prints:
1. model FLOPs per training step, counted analytically (``dit_flops``: every matmul and the two
   attention products, forward x 3 for forward + backward) and checked against
   ``torch.utils.flop_counter.FlopCounterMode`` on the real forward (ratio 1.000 when the formula
   is right) and on the real step (slightly above 1: the backward skips the input gradients of
   layers fed by data, e.g. the patch embedding and the text projections, which 3 x forward
   counts);
2. the achieved FLOP/s of the real training step (``train/dit.py``'s ``flow_loss``, backward,
   clipping, fused AdamW, EMA) as the best of ``--steps`` timed steps;
3. the peak matmul FLOP/s of this machine at the same dtype, measured in the same run (best of
   square matmuls of a few sizes, right before each timing), and MFU = achieved / peak.

bf16 means what training does: bf16 autocast with float32 weights and optimizer.

    python bench/mfu.py [--presets tiny shapes small] [--dtypes fp32 bf16] [--batch 16]
                        [--frames 17 --size 64] [--steps 3] [--profile small]
    python bench/mfu.py --device cuda --compile --presets small --batch 256 \
                        --latent 16 17 8 8 --patch 2 1     # configs/gpu_scenes_dit.yaml's shapes
    python bench/mfu.py --presets shapes --shape 256 10 8 --latent 4 17 16 16 --patch 2 4 --batch 32
    python bench/mfu.py --device cuda --vae video-4x8x8 --batch 2 --size 256 --dtypes bf16
    python bench/mfu.py --estimate      # GPU-hours per epoch from FLOPs and an *assumed* MFU
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from nanosora.config import (
    DIT_PRESETS,
    VAE_PRESETS,
    DiTConfig,
    DiTTrainConfig,
    TrainConfig,
    VAELossConfig,
)
from nanosora.models.dit import VideoDiT, token_grid
from nanosora.models.vae import VideoVAE
from nanosora.precision import bf16_autocast, bf16_fast
from nanosora.train.checkpoint import EMA
from nanosora.train.dit import flow_loss
from nanosora.train.loop import build_adamw, build_optimizer, optimizer_step
from nanosora.train.vae import vae_loss

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
TEXT_LEN = 32  # text tokens L (the default text encoder's max_length)
CPU = torch.device("cpu")


def dit_flops(cfg: DiTConfig, batch: int, grid: tuple[int, int, int], text_len: int) -> int:
    """Forward FLOPs (2 per multiply-add) of every matmul and attention product of the DiT.

    Norms, activations, RoPE and softmax are left out (they are O(N*D), the matmuls O(N*D^2)),
    as in the usual 6*N*params accounting (Kaplan et al. 2020; PaLM's MFU definition).
    """
    t, h, w = grid
    n, d, e, L = t * h * w, cfg.dim, cfg.text_dim, text_len
    hidden, p = int(d * cfg.mlp_ratio), cfg.in_channels * cfg.patch_t * cfg.patch_hw**2
    if cfg.attention == "full":
        self_attn = 2 * n * d * 3 * d + 4 * n * n * d + 2 * n * d * d  # qkv, QK^T + AV, proj
    else:  # space (h*w keys per query), then time (t keys), each with its own qkv and proj
        self_attn = 2 * (2 * n * d * 3 * d + 2 * n * d * d) + 4 * n * (h * w) * d + 4 * n * t * d
    cross = 2 * n * d * d + 2 * L * e * 2 * d + 4 * n * L * d + 2 * n * d * d  # q, kv, attn, proj
    mlp = 2 * 2 * n * d * hidden
    ada = 2 * d * 6 * d  # per sample, not per token
    block = self_attn + cross + mlp + ada
    embed = 2 * n * p * d + 2 * 256 * d + 2 * d * d + 2 * e * d + 2 * d * d  # patch, time, text
    head = 2 * d * 2 * d + 2 * n * d * p  # final adaLN + output layer
    # text refiner: in and out maps, then per block qkv, attention, proj and MLP over L tokens
    refiner_block = 2 * L * d * 3 * d + 4 * L * L * d + 2 * L * d * d + 2 * 2 * L * d * 4 * d
    refiner = (4 * L * e * d + cfg.text_refiner * refiner_block) if cfg.text_refiner else 0
    return batch * (cfg.depth * block + embed + head + refiner)


def counted_flops(fn) -> int:
    """FLOPs of one call of ``fn`` as torch's flop counter sees them (matmuls + attention).

    Attention runs on the math backend here: the CPU flash kernel is invisible to the counter,
    while the math path is plain batched matmuls it counts (same FLOPs, slower kernel).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul(dtype: torch.dtype, device: torch.device = CPU, repeats: int = 3) -> float:
    """Best FLOP/s of square matmuls at ``dtype`` on this device, now."""
    sizes, best = (4096, 8192) if device.type == "cuda" else (1024, 2048, 3072), 0.0
    for n in sizes:
        a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
        a @ b  # warm-up
        for _ in range(repeats if device.type == "cpu" else 10):
            sync(device)
            t0 = time.perf_counter()
            a @ b
            sync(device)
            best = max(best, 2 * n**3 / (time.perf_counter() - t0))
    return best


def make_step(
    cfg: DiTConfig,
    batch: int,
    latent: tuple[int, int, int, int],
    bf16: bool,
    device: torch.device = CPU,
    compile: bool = False,
    optim: str = "adamw",
):
    """One real training step (loss, backward, clip, optimizer (``optim.kind``), EMA) on random
    latents and text.

    As in training, the batch starts on the CPU and ``flow_loss`` moves it to the model's device
    and draws its noise there; ``compile`` wraps the model in ``torch.compile`` like
    ``train.compile``.
    """
    torch.manual_seed(0)
    model = VideoDiT(cfg).to(device)
    opt = build_optimizer(model, replace(DiTTrainConfig().optim, kind=optim))
    ema = EMA(model, 0.999)
    tcfg = DiTTrainConfig(dit=cfg, train=TrainConfig(bf16=bf16))
    x0 = torch.randn(batch, *latent)
    text, mask = torch.randn(batch, TEXT_LEN, cfg.text_dim), torch.ones(batch, TEXT_LEN, dtype=bool)
    gen = torch.Generator().manual_seed(0)
    forward_model = torch.compile(model) if compile else model

    def step() -> None:
        loss = flow_loss(forward_model, x0, text, mask, tcfg, gen)
        optimizer_step(loss, model, opt, ema, 1.0, 0)

    def forward() -> None:
        with torch.no_grad():
            model(*(a.to(device) for a in (x0, torch.rand(batch), text, mask)))

    return model, step, forward


def timed(step, steps: int, device: torch.device = CPU) -> tuple[float, float]:
    """(best seconds of ``steps`` timed calls, seconds of the first call: warm-up or compile)."""
    t0 = time.perf_counter()
    step()  # warm-up: allocations, oneDNN / cuBLAS kernel choice, torch.compile
    sync(device)
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times), first  # best of, like the peak: on a shared machine both are "undisturbed"


def fits(cfg: DiTConfig, batch: int, tokens: int, device: torch.device = CPU) -> tuple[bool, str]:
    """Rough memory need: weights + grads + Adam + EMA (5 x fp32) plus activations."""
    d, hidden = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    per_block = 4 * d * d + 2 * d * d + cfg.text_dim * 2 * d + 2 * d * hidden + 6 * d * d
    n_params = cfg.depth * per_block
    acts = cfg.depth * batch * tokens * (14 * d + 2 * hidden) * 4  # saved tensors per block
    need = 5 * 4 * n_params + acts
    avail = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else _available_memory()
    return need < 0.7 * avail, f"needs ~{need / 2**30:.1f} GiB of {avail / 2**30:.1f} GiB free"


def _available_memory() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def profile(step, top: int = 12, device: torch.device = CPU) -> None:
    """Where a step's time goes: ops (CPU) or kernels (GPU) by self time, and shares by kind."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    gpu = device.type == "cuda"
    step()
    sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with torch_profile(activities=activities) as prof:
        step()
        sync(device)
    events = prof.key_averages()
    self_time = (lambda e: e.self_device_time_total) if gpu else (lambda e: e.self_cpu_time_total)
    # On the GPU both an op and its kernels carry the kernels' time: keep the kernels (no CPU time).
    events = [e for e in events if self_time(e) > 0 and not (gpu and e.self_cpu_time_total > 0)]
    total = sum(self_time(e) for e in events)
    kinds = {  # op names on the CPU, kernel names on the GPU (cuBLAS: gemm, nvjet, xmma)
        "matmul": ("mm", "addmm", "bmm", "linear", "matmul", "_mkldnn", "gemm", "nvjet", "xmma"),
        "attention": ("attention", "softmax", "_efficient", "_flash", "fmha", "flash"),
        "optimizer+EMA": ("adam", "lerp", "foreach", "norm_", "clip", "multi_tensor"),
    }
    share = dict.fromkeys([*kinds, "other (elementwise, norms, copies)"], 0.0)
    for e in events:
        name = e.key.lower()
        kind = next((k for k, keys in kinds.items() if any(s in name for s in keys)), None)
        share[kind or "other (elementwise, norms, copies)"] += self_time(e)
    where = "GPU kernel" if gpu else "CPU op"
    print(
        f"  {where} time {total / 1e3:.1f} ms by kind: "
        + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in share.items())
    )
    for e in sorted(events, key=lambda e: -self_time(e))[:top]:
        print(f"    {e.key[:72]:<72} {100 * self_time(e) / total:5.1f}%  x{e.count}")


def make_vae_step(preset: str, batch: int, frames: int, size: int, bf16: bool, device):
    """A VAE training step (forward with posterior noise, loss, backward, clipping, fused AdamW)
    on random clips."""
    torch.manual_seed(0)
    vae = VideoVAE(VAE_PRESETS[preset]).to(device)
    opt = build_adamw(vae.parameters(), DiTTrainConfig().optim)
    x = torch.rand(batch, 3, frames, size, size, device=device) * 2 - 1
    noise = torch.randn(batch, *vae.latent_shape(frames, size, size)).to(device)
    loss_cfg = VAELossConfig(object_weight=0.0)

    def step() -> None:
        with bf16_autocast(device.type, bf16):
            rec, mean, logvar = vae(x, noise=noise)
        loss, _ = vae_loss(rec, x, mean, logvar, loss_cfg)
        optimizer_step(loss, vae, opt, None, 1.0, 0)

    return vae, step


def vae_mfu(args: argparse.Namespace, device: torch.device) -> None:
    """Time, peak memory and MFU of a VAE's training step (FLOPs from torch's counter)."""
    for dtype in args.dtypes:
        vae, step = make_vae_step(
            args.vae, args.batch, args.frames, args.size, dtype == "bf16", device
        )
        peak = peak_matmul(DTYPES[dtype], device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds, first = timed(step, args.steps, device)
        memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0
        flops = counted_flops(step)
        print(
            f"VAE {args.vae} {dtype} {sum(p.numel() for p in vae.parameters()) / 1e6:.1f}M "
            f"params, {args.batch} x {args.frames}x{args.size}x{args.size}: "
            f"{seconds * 1e3:.1f} ms/step (first {first:.1f} s), {args.batch / seconds:.1f} clips/s, "
            f"{flops / 1e9:.1f} GFLOP/step, MFU {100 * flops / seconds / peak:.1f}%"
            + (f", peak memory {memory:.1f} GiB" if memory else "")
        )


def estimate(args: argparse.Namespace) -> None:
    """GPU-hours per epoch from analytic FLOPs and an assumed MFU (no GPU step time measured)."""
    peak, mfu = args.gpu_peak_tflops * 1e12, args.assume_mfu
    datasets = {"MSR-VTT (10k clips)": 10_000, "Panda-70M (70.7M clips)": 70_700_000}
    print(
        f"ASSUMED: {args.gpu_peak_tflops:.0f} TFLOP/s dense bf16 peak per GPU (H100 SXM), "
        f"MFU {100 * mfu:.0f}%; no GPU step time was measured. Model FLOPs only: activation "
        "checkpointing adds ~1/3 (a second forward), the VAE encodes each clip once (cache)"
    )
    for name in ("base", "large"):
        cfg = DIT_PRESETS[name]
        for frames in (17, 33, 49):
            grid = (1 + (frames - 1) // 4, 256 // 16, 256 // 16)  # 4x8x8 VAE, 2x2 patches
            flops = 3 * dit_flops(cfg, 1, grid, TEXT_LEN)
            for ds, n in datasets.items():
                hours = flops * n / (peak * mfu) / 3600
                print(
                    f"  {name:<5} {frames}x256x256 ({grid[0] * grid[1] * grid[2]} tokens): "
                    f"{flops / 1e12:.2f} TFLOP/clip, {ds}: {hours:,.2f} GPU-hours/epoch"
                )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--presets", nargs="+", default=["tiny", "shapes", "small"])
    ap.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--frames", type=int, default=17, help="pixel frames (4k+1)")
    ap.add_argument("--size", type=int, default=64, help="pixel height = width")
    ap.add_argument("--steps", type=int, default=3, help="timed steps (best of) after 1 warm-up")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument(
        "--compile", action="store_true", help="torch.compile the model (train.compile)"
    )
    ap.add_argument(
        "--latent", nargs=4, type=int, metavar=("C", "T", "H", "W"),
        help="latent shape instead of the preset's channels and a 4x8x8 VAE's grid",
    )  # fmt: skip
    ap.add_argument("--patch", nargs=2, type=int, metavar=("T", "HW"), help="patch_t, patch_hw")
    ap.add_argument("--optim", default="adamw", choices=["adamw", "muon"], help="optim.kind")
    ap.add_argument(
        "--shape", nargs=3, type=int, metavar=("DIM", "DEPTH", "HEADS"),
        help="width, depth and heads instead of the preset's (e.g. 256 10 8)",
    )  # fmt: skip
    ap.add_argument("--profile", nargs="*", default=[], help="presets to profile")
    ap.add_argument("--vae", choices=list(VAE_PRESETS), help="time this VAE's step instead")
    ap.add_argument("--estimate", action="store_true", help="GPU-hours/epoch table and exit")
    ap.add_argument("--gpu-peak-tflops", type=float, default=989.0)
    ap.add_argument("--assume-mfu", type=float, default=0.35)
    args = ap.parse_args()
    if args.estimate:
        return estimate(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{where}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.frames}x{args.size}px, torch {torch.__version__}"
        + (", torch.compile" if args.compile else "")
        + (f", optimizer {args.optim}" if args.optim != "adamw" else "")
    )
    if args.vae:
        return vae_mfu(args, device)
    for preset in args.presets:
        cfg = DIT_PRESETS[preset]
        latent = (cfg.in_channels, 1 + (args.frames - 1) // 4, args.size // 8, args.size // 8)
        if args.latent:
            latent = tuple(args.latent)
            cfg = replace(cfg, in_channels=latent[0])
        if args.patch:
            cfg = replace(cfg, patch_t=args.patch[0], patch_hw=args.patch[1])
        if args.shape:
            cfg = replace(cfg, dim=args.shape[0], depth=args.shape[1], heads=args.shape[2])
        grid = token_grid(cfg, *latent[1:])
        tokens = grid[0] * grid[1] * grid[2]
        ok, why = fits(cfg, args.batch, tokens, device)
        if not ok:
            print(f"{preset}: skipped, {why}")
            continue
        analytic = 3 * dit_flops(cfg, args.batch, grid, TEXT_LEN)
        for dtype in args.dtypes:
            if dtype == "bf16" and not bf16_fast(device.type):
                print(
                    f"{preset:<6} bf16 skipped: this device emulates bf16 (training runs float32)"
                )
                continue
            model, step, forward = make_step(
                cfg, args.batch, latent, dtype == "bf16", device, args.compile, args.optim
            )
            # The peak is measured right before the step, under the same load (a shared machine
            # changes speed from minute to minute).
            peak = peak_matmul(DTYPES[dtype], device)
            seconds, first = timed(step, args.steps, device)
            fwd = dit_flops(cfg, args.batch, grid, TEXT_LEN) / counted_flops(forward)
            # A compiled step is not counted (the counter would force a recompile), and the
            # counter's math-backend attention holds every (N x N) score matrix: it may not fit.
            try:
                counted = counted_flops(step) if not args.compile else float("nan")
            except torch.OutOfMemoryError:
                counted = float("nan")
            achieved = analytic / seconds
            print(
                f"{preset:<6} {dtype} {model.num_params() / 1e6:6.1f}M params, {tokens} tokens, "
                f"{analytic / 1e9:8.1f} GFLOP/step (analytic / flop_counter: forward "
                f"{fwd:.3f}, step {analytic / counted:.3f}), {seconds * 1e3:8.1f} ms/step "
                f"(first {first:.1f} s), {achieved / 1e9:8.1f} GFLOP/s of {peak / 1e9:.1f} peak, "
                f"MFU {100 * achieved / peak:5.1f}%"
            )
            if preset in args.profile:
                profile(step, device=device)


if __name__ == "__main__":
    main()
