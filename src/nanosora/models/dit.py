"""Video Diffusion Transformer: noisy latents (B, c, t, h, w) + timestep + text -> velocity.

Shape notation (README): B batch, c t h w latents, N tokens, D width, L text tokens, E text width.

The model, in order:
1. patchify: (B, c, t, h, w) -> (B, N, D) with N = t/pt * h/ph * w/ph (a linear map per patch);
2. conditioning vector: sinusoidal timestep embedding -> MLP, plus the masked mean of the text
   features -> MLP (a cheap global text signal, like SD3's pooled vector; ``pooled_text``
   switches it off; ``text_refiner`` blocks may refine the text features first); one per
   clip, or one per latent frame when frames carry their own noise level (clean frames given
   for image-to-video and extension have level 0);
3. ``depth`` blocks, each: adaLN-modulated self-attention over all tokens (full 3D) or over space
   then time (factorised), cross-attention to the text tokens (``text_pos`` adds their word
   order), adaLN-modulated MLP. Gates start at
   zero (adaLN-Zero, DiT, Peebles & Xie 2023), so every block starts as the identity;
4. final adaLN + linear to patch pixels, zero-initialised, so the untrained model predicts 0;
5. unpatchify back to (B, c, t, h, w).

Positions enter through 3D rotary embeddings (RoPE over t, h, w): relative, so the same weights
extrapolate to other frame counts and sizes (needed for bucketed multi-resolution training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from nanosora.config import DiTConfig


def timestep_embedding(timestep: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) timesteps in [0, 1] -> (B, dim) sinusoidal features (scaled by 1000 like DDPM's)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=timestep.device) / half)
    args = timestep.float()[:, None] * 1000.0 * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Split a head's channels among the (t, h, w) axes; each share must be even."""
    hw = (head_dim // 3) // 2 * 2
    return head_dim - 2 * hw, hw, hw


def rope_3d(t: int, h: int, w: int, head_dim: int, device: torch.device | None = None) -> Tensor:
    """Rotations for a (t, h, w) token grid: (N, head_dim // 2, 2) cosines and sines of angles
    position x frequency per axis, N = t*h*w (t-major). Real, not complex: torch.compile's
    code generation has no complex kernels (``apply_rope`` views it as complex when eager)."""
    angles = []
    for size, d in zip((t, h, w), rope_axis_dims(head_dim)):
        freqs = 1.0 / (10000.0 ** (torch.arange(0, d, 2, device=device).float() / d))
        angles.append(torch.outer(torch.arange(size, device=device).float(), freqs))  # (size, d/2)
    at, ah, aw = angles
    grid = torch.cat(
        [
            at[:, None, None].expand(t, h, w, -1),
            ah[None, :, None].expand(t, h, w, -1),
            aw[None, None, :].expand(t, h, w, -1),
        ],
        dim=-1,
    ).reshape(t * h * w, -1)
    return torch.stack((grid.cos(), grid.sin()), dim=-1)


def sincos_1d(size: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(size, dim) sines and cosines of the indices 0..size-1 x geometric frequencies (an odd
    ``dim`` ends in a zero)."""
    half = dim // 2
    freqs = 1.0 / (10000.0 ** (torch.arange(half, device=device).float() / half))
    angles = torch.outer(torch.arange(size, device=device).float(), freqs)
    return F.pad(torch.cat([angles.sin(), angles.cos()], dim=-1), (0, dim - 2 * half))


def sincos_3d(t: int, h: int, w: int, dim: int, device: torch.device | None = None) -> Tensor:
    """(N, dim) fixed embeddings of a (t, h, w) token grid's integer indices (t-major): each axis
    takes RoPE's share of the channels for its ``sincos_1d`` (DiT's 2D table, with time as a
    third axis)."""
    tt, th, tw = (sincos_1d(s, d, device) for s, d in zip((t, h, w), rope_axis_dims(dim)))
    return torch.cat(
        [
            tt[:, None, None].expand(t, h, w, -1),
            th[None, :, None].expand(t, h, w, -1),
            tw[None, None, :].expand(t, h, w, -1),
        ],
        dim=-1,
    ).reshape(t * h * w, dim)


def apply_rope(x: Tensor, rotation: Tensor) -> Tensor:
    """Rotate channel pairs of x (..., N, hd) by the (N, hd/2, 2) cosines and sines of
    ``rotation``: the complex product (a + ib)(cos + i sin) per pair. Eager, one complex multiply
    (the fastest kernel on a CPU); compiled, the same in real arithmetic, which inductor fuses."""
    pairs = x.float().unflatten(-1, (-1, 2))
    if torch.compiler.is_compiling():
        a, b = pairs.unbind(-1)
        cos, sin = rotation.unbind(-1)
        return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2).type_as(x)
    rotated = torch.view_as_complex(pairs.contiguous()) * torch.view_as_complex(rotation)
    return torch.view_as_real(rotated).flatten(-2).type_as(x)


def per_frame(x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """View (B, N, D) tokens as (B, F, N/F, D) to match (B, F, D) conditioning (F = 1 or one
    entry per token frame; tokens are frame-major), and give c a broadcast axis."""
    b, n, d = x.shape
    return x.view(b, c.shape[1], n // c.shape[1], d), c[:, :, None]


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: (B, N, D) normalised tokens, (B, F, D) shift/scale from the conditioning."""
    xf, shift = per_frame(x, shift)
    return torch.addcmul(shift, xf, 1 + scale[:, :, None]).view_as(x)


def gated_residual(x: Tensor, out: Tensor, gate: Tensor) -> Tensor:
    """x + out * gate: (B, N, D) residual and block output, (B, F, D) adaLN-Zero gate."""
    outf, gate = per_frame(out, gate)
    return torch.addcmul(x.view_as(outf), outf, gate).view_as(x)


def qk_norm_rope(qk: Tensor, q_norm: nn.Module, k_norm: nn.Module, rotation: Tensor) -> Tensor:
    """(2, B, H, N, d) stacked queries and keys -> RMS-normalised (when the model has QK-norm)
    and rotated, in one pass over both. Norms run in float32 (under bf16 autocast a bf16 input
    with fp32 weights takes a slow unfused path)."""
    if isinstance(q_norm, nn.RMSNorm):
        weight = torch.stack([q_norm.weight, k_norm.weight]).view(2, 1, 1, 1, -1)
        qk = F.rms_norm(qk.float(), qk.shape[-1:], eps=q_norm.eps) * weight
    return apply_rope(qk, rotation)


def token_grid(cfg: DiTConfig, t: int, h: int, w: int) -> tuple[int, int, int]:
    """Token grid of a (t, h, w) latent for a DiT of ``cfg``; time is front-padded to whole
    temporal patches (see ``VideoDiT.forward``), errors name the size that does not divide."""
    pt, ph = cfg.patch_t, cfg.patch_hw
    if h % ph or w % ph:
        raise ValueError(
            f"latent (t, h, w)=({t}, {h}, {w}) is not divisible by patch ({pt}, {ph}, {ph})"
        )
    return -(-t // pt), h // ph, w // ph


class TanhGELU(nn.GELU):
    """GELU with the tanh approximation. Without autograd, on float32 CPU tensors, computed as
    x * sigmoid(2u) (u the tanh argument; 0.5 (1 + tanh u) = sigmoid(2u), the same function) in
    place: PyTorch's vectorised CPU tanh runs ~2x slower than these four passes."""

    C1 = 2 * math.sqrt(2 / math.pi)
    C3 = C1 * 0.044715

    def __init__(self):
        super().__init__(approximate="tanh")

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled() or x.device.type != "cpu" or x.dtype != torch.float32:
            return super().forward(x)
        u = x * x
        return u.mul_(self.C3).add_(self.C1).mul_(x).sigmoid_().mul_(x)


EXPLICIT_ATTENTION_MAX = 512 * 512  # query-key pairs per head up to which the matmul path runs


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention of (B, H, N, d) queries on (B, H, L, d) keys and values;
    ``mask`` (broadcastable to (B, H, N, L), True = attend).

    On a CPU, when autograd records or the inputs are bf16, short sequences run as two matmuls
    and a float32 softmax: there the CPU flash kernel's backward and its bf16 paths are several
    times slower than bf16/fp32 GEMMs (bench/mfu.py). Otherwise, torch's fused kernel.
    """
    n, keys = q.shape[-2], k.shape[-2]
    fused_is_fine = q.dtype == torch.float32 and not torch.is_grad_enabled()
    if q.device.type != "cpu" or n * keys > EXPLICIT_ATTENTION_MAX or fused_is_fine:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1).to(v.dtype) @ v


@dataclass
class TextContext:
    """What a forward needs from the text: the (B, L, E) features, the pooled text's
    conditioning (B, 1, D), the (B, 1, 1, L) attention mask and, when precomputed for
    sampling, every block's normalised cross-attention keys and values (B, H, L, d each), so a
    sampler computes them once rather than at every step. Training leaves ``kv`` empty: each
    block computes its own inside its forward (where FSDP has its weights gathered)."""

    text: Tensor
    pooled: Tensor
    mask: Tensor
    kv: list[tuple[Tensor, Tensor]] | None = None


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE; full 3D or factorised (space, then time)."""

    def __init__(self, dim: int, heads: int, qk_norm: bool, factorized: bool):
        super().__init__()
        self.heads, self.factorized = heads, factorized
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        if factorized:
            self.qkv_t = nn.Linear(dim, 3 * dim)
            self.proj_t = nn.Linear(dim, dim)

    def _qkv(self, x: Tensor, layer: nn.Linear, rotation: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        qkv = rearrange(layer(x), "B N (k H d) -> k B H N d", k=3, H=self.heads)
        # RoPE is applied on the full 3D grid before any regrouping: inside a frame the t angle
        # is shared and cancels, so the same table serves spatial and temporal attention.
        q, k = qk_norm_rope(qkv[:2], self.q_norm, self.k_norm, rotation).to(qkv.dtype).unbind(0)
        return q, k, qkv[2]

    def forward(self, x: Tensor, rotation: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, N, D) tokens, (N, hd/2) RoPE rotations, grid (t, h, w) -> (B, N, D)."""
        q, k, v = self._qkv(x, self.qkv, rotation)
        if not self.factorized:
            out = attention(q, k, v)
            return self.proj(rearrange(out, "B H N d -> B N (H d)"))
        t, h, w = grid
        # Spatial: attend within each frame.
        q, k, v = (rearrange(a, "B H (t s) d -> (B t) H s d", t=t) for a in (q, k, v))
        out = attention(q, k, v)
        spatial = self.proj(rearrange(out, "(B t) H s d -> B (t s) (H d)", t=t))
        # Temporal: attend across frames at each spatial position, on the spatially updated x.
        q, k, v = self._qkv(x + spatial, self.qkv_t, rotation)
        q, k, v = (rearrange(a, "B H (t s) d -> (B s) H t d", t=t) for a in (q, k, v))
        out = attention(q, k, v)
        temporal = self.proj_t(rearrange(out, "(B s) H t d -> B (t s) (H d)", s=h * w))
        return spatial + temporal  # the block adds this to its input, like the full-3D path


class CrossAttention(nn.Module):
    """Tokens attend to text features; padded text tokens are masked out."""

    def __init__(self, dim: int, text_dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(text_dim, 2 * dim)
        self.q_norm = nn.RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def keys_values(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, E) text -> normalised keys and values, (B, H, L, d) each."""
        k, v = rearrange(self.kv(text), "B L (k H d) -> k B H L d", k=2, H=self.heads)
        return self.k_norm(k.float()).to(v.dtype), v

    def forward(
        self,
        x: Tensor,
        text: Tensor | tuple[Tensor, Tensor],
        mask: Tensor,
        probs: list[Tensor] | None = None,
    ) -> Tensor:
        """(B, N, D) tokens, (B, L, E) text or its ``keys_values``, (B, 1, 1, L) bool mask;
        given a ``probs`` list, the attention probabilities averaged over heads, (B, N, L)
        float32, are appended to it (for the grounding loss)."""
        k, v = self.keys_values(text) if isinstance(text, Tensor) else text
        q = rearrange(self.q(x), "B N (H d) -> B H N d", H=self.heads)
        q = self.q_norm(q.float()).to(v.dtype)
        if probs is None:
            out = attention(q, k, v, mask)
        else:
            scores = (q @ k.transpose(-1, -2)).float() * q.shape[-1] ** -0.5
            p = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            probs.append(p.mean(1))
            out = p.to(v.dtype) @ v
        return self.proj(rearrange(out, "B H N d -> B N (H d)"))


class RefinerBlock(nn.Module):
    """Pre-norm self-attention and MLP over the text tokens (no RoPE: the encoder's features
    already carry the word order); padded tokens are masked out as keys."""

    def __init__(self, dim: int, heads: int, qk_norm: bool):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(dim // heads) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), TanhGELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """(B, L, D) tokens, (B, 1, 1, L) bool key mask -> (B, L, D)."""
        q, k, v = rearrange(self.qkv(self.norm1(x)), "B L (k H d) -> k B H L d", k=3, H=self.heads)
        q, k = self.q_norm(q.float()).to(v.dtype), self.k_norm(k.float()).to(v.dtype)
        x = x + self.proj(rearrange(attention(q, k, v, mask), "B H L d -> B L (H d)"))
        return x + self.mlp(self.norm2(x))


class TextRefiner(nn.Module):
    """``depth`` RefinerBlocks at the model's width over the frozen text features, added back
    through a zero-initialised map: at initialisation the text passes through unchanged."""

    def __init__(self, text_dim: int, dim: int, heads: int, depth: int, qk_norm: bool):
        super().__init__()
        self.inp = nn.Linear(text_dim, dim)
        self.blocks = nn.ModuleList(RefinerBlock(dim, heads, qk_norm) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, text_dim)

    def forward(self, text: Tensor, mask: Tensor) -> Tensor:
        """(B, L, E) features, (B, L) bool mask -> (B, L, E) refined features."""
        x, key_mask = self.inp(text), mask[:, None, None, :]
        for block in self.blocks:
            x = block(x, key_mask)
        return text + self.out(self.norm(x))


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(d, cfg.heads, cfg.qk_norm, cfg.attention == "factorized")
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.cross = CrossAttention(d, cfg.text_dim, cfg.heads, cfg.qk_norm)
        self.norm3 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), TanhGELU(), nn.Linear(hidden, d))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(
        self,
        x: Tensor,
        c: Tensor,
        text: Tensor | tuple[Tensor, Tensor],
        mask: Tensor,
        rotation: Tensor,
        grid: tuple[int, int, int],
        probs: list[Tensor] | None = None,
    ) -> Tensor:
        """(B, N, D) tokens, (B, F, D) conditioning (F = 1 or per token frame), the text (or
        this block's keys and values for it) -> (B, N, D); ``probs``: see CrossAttention."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=-1)
        attn = self.attn(modulate(self.norm1(x), shift1, scale1), rotation, grid)
        x = gated_residual(x, attn, gate1)
        x = x + self.cross(self.norm2(x), text, mask, probs)
        return gated_residual(x, self.mlp(modulate(self.norm3(x), shift2, scale2)), gate2)


class VideoDiT(nn.Module):
    """Text-conditioned video DiT predicting the rectified-flow velocity."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        d, p = cfg.dim, cfg.in_channels * cfg.patch_t * cfg.patch_hw**2
        self.patch_embed = nn.Linear(p, d)
        self.time_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.text_pool = (
            nn.Sequential(nn.Linear(cfg.text_dim, d), nn.SiLU(), nn.Linear(d, d))
            if cfg.pooled_text
            else None
        )
        self.text_refiner = (
            TextRefiner(cfg.text_dim, d, cfg.heads, cfg.text_refiner, cfg.qk_norm)
            if cfg.text_refiner
            else None
        )
        # which word of the prompt each text token is, mapped from fixed sines and cosines
        self.text_pos = nn.Linear(cfg.text_dim, cfg.text_dim) if cfg.text_pos else None
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, p)
        self._rotations: dict[tuple, Tensor] = {}  # RoPE tables by (grid, device)
        self._positions: dict[tuple, Tensor] = {}  # abs_pos tables by (grid, device)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Xavier for linears; zero for every adaLN map and the output (adaLN-Zero)."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.time_mlp[0].weight, std=0.02)
        nn.init.normal_(self.time_mlp[2].weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.ada[-1].weight)
            nn.init.zeros_(block.ada[-1].bias)
        if self.text_refiner is not None:
            nn.init.zeros_(self.text_refiner.out.weight)
            nn.init.zeros_(self.text_refiner.out.bias)
        zero = [self.ada_out[-1], self.out] + ([self.text_pos] if self.text_pos is not None else [])
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        """Token grid of a (t, h, w) latent (``token_grid`` of this model's config)."""
        return token_grid(self.cfg, t, h, w)

    def patchify(self, z: Tensor) -> Tensor:
        """(B, c, t, h, w) -> (B, N, c*pt*ph*ph)."""
        pt, ph = self.cfg.patch_t, self.cfg.patch_hw
        return rearrange(z, "B c (t a) (h p) (w q) -> B (t h w) (c a p q)", a=pt, p=ph, q=ph)

    def unpatchify(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """(B, N, c*pt*ph*ph) -> (B, c, t, h, w)."""
        pt, ph = self.cfg.patch_t, self.cfg.patch_hw
        t, h, w = grid
        return rearrange(
            x, "B (t h w) (c a p q) -> B c (t a) (h p) (w q)", t=t, h=h, w=w, a=pt, p=ph, q=ph
        )

    def encode_text(self, text: Tensor, mask: Tensor, keys: bool = True) -> TextContext:
        """(B, L, E) text features and (B, L) mask -> the TextContext of a forward; ``keys``:
        precompute every block's keys and values (for a sampler's repeated steps). On a CPU,
        padding that every prompt of the batch has is dropped first (masked tokens add nothing to
        cross-attention; elsewhere the lengths' readback would cost a device sync)."""
        if text.device.type == "cpu" and not torch.compiler.is_compiling():
            valid = mask.any(0).nonzero()
            length = int(valid[-1]) + 1 if len(valid) else 1
            text, mask = text[:, :length], mask[:, :length]
        order = None
        if self.text_pos is not None:  # before the refiner, which can then use word order too
            table = sincos_1d(text.shape[1], text.shape[2], text.device).to(text.dtype)
            order = self.text_pos(table)
            text = text + order
        if self.text_refiner is not None:
            text = self.text_refiner(text, mask)
        if self.text_pool is None:
            pooled = text.new_zeros(text.shape[0], 1, self.cfg.dim)
        else:
            m = mask.to(text.dtype)[..., None]
            words = text if order is None else text - order  # the pooled vector: no positions
            mean = (words * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, E)
            pooled = self.text_pool(mean)[:, None]
        kv = [block.cross.keys_values(text) for block in self.blocks] if keys else None
        return TextContext(text, pooled, mask[:, None, None, :], kv)

    def _grid_table(self, tables: dict, make, grid: tuple[int, int, int], device) -> Tensor:
        """A table of a token grid, computed once per grid and device (in a compiled graph,
        where the cache's lookups would cost a recompile, it is computed in the graph)."""
        if torch.compiler.is_compiling():
            return make(*grid, device=device)
        key = (grid, device)
        if key not in tables:
            tables[key] = make(*grid, device=device)
        return tables[key]

    def rotation(self, grid: tuple[int, int, int], device: torch.device) -> Tensor:
        """The RoPE table of a token grid."""
        head_dim = self.cfg.dim // self.cfg.heads
        return self._grid_table(self._rotations, partial(rope_3d, head_dim=head_dim), grid, device)

    def positions(self, grid: tuple[int, int, int], device: torch.device) -> Tensor:
        """The (N, D) absolute position table of a token grid (``abs_pos``)."""
        return self._grid_table(self._positions, partial(sincos_3d, dim=self.cfg.dim), grid, device)

    def forward(
        self,
        z: Tensor,
        timestep: Tensor,
        text: Tensor | TextContext,
        mask: Tensor | None = None,
        cross_probs: list[Tensor] | None = None,
    ) -> Tensor:
        """(B, c, t, h, w) noisy latents, timesteps in [0, 1], (B, L, E) text and (B, L) mask
        (or a TextContext from ``encode_text``, reused across sampling steps)
        -> (B, c, t, h, w) predicted velocity. Given a ``cross_probs`` list, each block appends
        its cross-attention probabilities, (B, N, L') averaged over heads (L' <= L: the text as
        ``encode_text`` trimmed it).

        ``timestep`` is (B,) (one noise level per clip) or (B, t) (one per latent frame): frames
        given clean for image-to-video or extension carry 0 there (Open-Sora 1.1's frame masks).
        With ``patch_t > 1`` the frames of a temporal patch must share their timestep. A frame
        count that is not a multiple of ``patch_t`` gets zero frames in front, so a causal VAE's
        lone first frame (the image of image-to-video) shares its patch with padding only; the
        padding's predictions are dropped.
        """
        frames = z.shape[2]
        grid = self.grid(*z.shape[2:])
        pad = grid[0] * self.cfg.patch_t - frames
        if not isinstance(text, TextContext):
            text = self.encode_text(text, mask, keys=False)
        rotation = self.rotation(grid, z.device)
        if pad:
            z = torch.cat([z.new_zeros(*z.shape[:2], pad, *z.shape[3:]), z], dim=2)
        x = self.patch_embed(self.patchify(z))  # (B, N, D)
        if self.cfg.abs_pos:
            x = x + self.positions(grid, z.device).to(x.dtype)
        if timestep.dim() == 1:
            timestep = timestep[:, None]  # (B, 1): one level for every frame
        elif timestep.shape[1] != frames:
            raise ValueError(
                f"per-frame timesteps {tuple(timestep.shape)} do not match {frames} frames"
            )
        else:
            timestep = torch.cat([timestep[:, :1].expand(-1, pad), timestep], dim=1)
            timestep = timestep[:, :: self.cfg.patch_t]  # one per token frame
        temb = timestep_embedding(timestep.flatten(), 256).to(x.dtype)
        c = self.time_mlp(temb).unflatten(0, timestep.shape) + text.pooled
        per_block = text.kv or [text.text] * len(self.blocks)
        for block, block_text in zip(self.blocks, per_block):
            x = block(x, c, block_text, text.mask, rotation, grid, cross_probs)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        x = self.out(modulate(self.norm_out(x), shift, scale))
        return self.unpatchify(x, grid)[:, :, pad:]

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
