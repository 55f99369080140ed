"""bf16 autocast only where the hardware computes bf16: elsewhere it is emulated.

On a CPU without bf16 matrix units (x86 with AVX2 only, for one) a bf16 matmul runs about 100x
slower than float32, so ``train.bf16: true`` would turn minutes into hours. Whether a CPU has
them is measured once per process (a 256 x 256 matmul in each dtype, a few milliseconds on
either kind of machine), not guessed from its name.
"""

from __future__ import annotations

import functools
import time
import warnings

import torch


def _seconds(a: torch.Tensor, b: torch.Tensor) -> float:
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start


@functools.cache
def cpu_bf16_fast(repeats: int = 10) -> bool:
    """Whether this CPU multiplies bf16 matrices at least as fast as float32 ones.

    The two dtypes are timed in alternation and each keeps its best time, so a busy machine
    (another process preempting this one) slows both alike instead of deciding the answer."""
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    a16, b16 = a.bfloat16(), b.bfloat16()
    a @ b, a16 @ b16  # warm-up: kernel selection, caches
    fp32 = bf16 = float("inf")
    for _ in range(repeats):
        fp32 = min(fp32, _seconds(a, b))
        bf16 = min(bf16, _seconds(a16, b16))
    fast = bf16 <= fp32
    if not fast:
        warnings.warn(
            f"bf16 requested, but this CPU ({torch.backends.cpu.get_cpu_capability()}) emulates "
            f"it: a bf16 matmul took {bf16 / fp32:.0f}x as long as float32. Computing in float32.",
            RuntimeWarning,
            stacklevel=3,
        )
    return fast


def bf16_fast(device_type: str) -> bool:
    """Whether bf16 autocast pays on this kind of device."""
    if device_type == "cpu":
        return cpu_bf16_fast()
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    return True


def bf16_autocast(device_type: str, wanted: bool = True) -> torch.autocast:
    """bf16 autocast on ``device_type`` when ``wanted`` and the device computes bf16 natively;
    otherwise a disabled autocast (float32)."""
    enabled = wanted and bf16_fast(device_type)
    return torch.autocast(device_type, dtype=torch.bfloat16, enabled=enabled)
