"""Video DiT invariants: patchify round trip, zero init, padding invariance, RoPE, both attentions."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from nanosora.config import DIT_PRESETS, ConfigError, DiTConfig
from nanosora.models.dit import TanhGELU, VideoDiT, apply_rope, attention, rope_3d

TINY = DiTConfig(in_channels=4, dim=32, depth=2, heads=2, text_dim=16)


def make(cfg=TINY, seed=0, perturb=True):
    torch.manual_seed(seed)
    m = VideoDiT(cfg).eval()
    if perturb:  # zero-initialised layers make many checks vacuous: give every weight a value
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.05)
    return m


def inputs(b=2, t=3, h=4, w=6, L=5):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(b, 4, t, h, w, generator=g)
    text = torch.randn(b, L, 16, generator=g)
    mask = torch.ones(b, L, dtype=torch.bool)
    return z, torch.rand(b, generator=g), text, mask


def test_patchify_round_trip():
    m = make()
    z = torch.randn(2, 4, 3, 4, 6)
    tokens = m.patchify(z)
    assert tokens.shape == (2, 3 * 2 * 3, 4 * 4)
    torch.testing.assert_close(m.unpatchify(tokens, m.grid(3, 4, 6)), z)


def test_zero_initialised_output():
    m = make(perturb=False)
    out = m(*inputs())
    assert out.abs().max().item() == 0.0
    # adaLN-Zero: every block's gates start at zero, so blocks start as identity on the residual.
    assert all(b.ada[-1].weight.abs().sum() == 0 for b in m.blocks)


@pytest.mark.parametrize("attention", ["full", "factorized"])
def test_shapes_and_padding_invariance(attention):
    m = make(dataclasses.replace(TINY, attention=attention))
    z, s, text, mask = inputs()
    out = m(z, s, text, mask)
    assert out.shape == z.shape
    # Append padded text tokens with garbage features: the output must not change.
    pad = torch.randn(2, 3, 16) * 100
    text2 = torch.cat([text, pad], 1)
    mask2 = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
    torch.testing.assert_close(m(z, s, text2, mask2), out, atol=1e-5, rtol=1e-5)


def test_padding_every_prompt_shares_is_dropped_and_the_rest_kept():
    m = make()
    z, s, text, _ = inputs(L=8)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[0, :5], mask[1, :2] = True, True
    ctx = m.encode_text(text, mask)
    assert ctx.text.shape[1] == 5 and ctx.mask.shape[-1] == 5 and len(ctx.kv[0][0][0, 0]) == 5
    with torch.no_grad():
        both = m(z, s, ctx)
        # Each prompt alone (its own padding dropped further) gives its row of the batch.
        for i in range(2):
            alone = m(z[i : i + 1], s[i : i + 1], text[i : i + 1], mask[i : i + 1])
            torch.testing.assert_close(alone, both[i : i + 1], atol=1e-5, rtol=1e-5)


def test_tanh_gelu_fast_path_is_the_same_function():
    gelu, x = TanhGELU(), torch.linspace(-12, 12, 100_001)
    ref = F.gelu(x, approximate="tanh")
    with torch.no_grad():
        fast = gelu(x)
    torch.testing.assert_close(fast, ref, atol=2e-6, rtol=1e-5)
    assert torch.equal(x, torch.linspace(-12, 12, 100_001))  # the input is not modified
    y = x.clone().requires_grad_()
    assert torch.equal(gelu(y), ref)  # with autograd: PyTorch's own kernel
    with torch.no_grad():
        assert torch.equal(gelu(x.bfloat16()), F.gelu(x.bfloat16(), approximate="tanh"))


def test_text_and_timestep_matter():
    m = make()
    z, s, text, mask = inputs()
    out = m(z, s, text, mask)
    assert not torch.allclose(m(z, s, torch.randn_like(text), mask), out)
    assert not torch.allclose(m(z, 1 - s, text, mask), out)


def test_without_pooled_text_the_text_enters_by_cross_attention_only():
    m = make(dataclasses.replace(TINY, pooled_text=False))
    assert m.text_pool is None
    assert m.num_params() < make().num_params()
    z, s, text, mask = inputs()
    out = m(z, s, text, mask)
    assert not torch.allclose(m(z, s, torch.randn_like(text), mask), out)
    # Zero cross-attention output projections: the text has no other way in.
    with torch.no_grad():
        for block in m.blocks:
            block.cross.proj.weight.zero_()
            block.cross.proj.bias.zero_()
    torch.testing.assert_close(m(z, s, torch.randn_like(text), mask), m(z, s, text, mask))


def test_batch_elements_are_independent():
    m = make()
    z, s, text, mask = inputs(b=3)
    full = m(z, s, text, mask)
    torch.testing.assert_close(
        m(z[1:2], s[1:2], text[1:2], mask[1:2]), full[1:2], atol=1e-5, rtol=1e-5
    )


def test_other_sizes_run():
    """Relative positions (RoPE): the same weights take other frame counts and sizes."""
    m = make()
    for t, h, w in [(1, 2, 2), (5, 8, 4)]:
        z, s, text, mask = inputs(t=t, h=h, w=w)
        assert m(z, s, text, mask).shape == z.shape


def test_bad_latent_size_is_named():
    m = make()
    z, s, text, mask = inputs(h=5)
    with pytest.raises(ValueError, match="not divisible"):
        m(z, s, text, mask)


def test_rope_is_relative():
    """q.k after RoPE depends only on the offset between two positions."""
    angles = rope_3d(4, 4, 4, 12)
    q, k = torch.randn(12), torch.randn(12)
    rq = apply_rope(q.expand(1, 1, 64, 12), angles)[0, 0]
    rk = apply_rope(k.expand(1, 1, 64, 12), angles)[0, 0]
    idx = lambda t, h, w: t * 16 + h * 4 + w  # noqa: E731
    a = rq[idx(0, 1, 0)] @ rk[idx(1, 2, 1)]
    b = rq[idx(2, 2, 1)] @ rk[idx(3, 3, 2)]
    torch.testing.assert_close(a, b)


def test_rope_is_the_complex_rotation_of_channel_pairs():
    """The real-arithmetic rotation equals (a + ib) e^(i angle) per channel pair."""
    rotation = rope_3d(3, 2, 2, 12)  # (N, 6, 2) cosines and sines
    x = torch.randn(2, 4, 12, 12)
    angle = torch.atan2(rotation[..., 1], rotation[..., 0])
    pairs = torch.view_as_complex(x.unflatten(-1, (-1, 2)).contiguous())
    expected = torch.view_as_real(pairs * torch.polar(torch.ones_like(angle), angle)).flatten(-2)
    torch.testing.assert_close(apply_rope(x, rotation), expected)
    torch.testing.assert_close(rotation.pow(2).sum(-1), torch.ones(12, 6))  # unit modulus


def test_preset_sizes():
    """From a few M parameters (CPU) to ~700M (GPU); built on the meta device, no memory used."""
    with torch.device("meta"):
        sizes = {name: VideoDiT(cfg).num_params() / 1e6 for name, cfg in DIT_PRESETS.items()}
    assert sizes["tiny"] < sizes["shapes"] < 12 < sizes["small"] < sizes["base"] < sizes["large"]
    assert 600 < sizes["large"] < 800, sizes


def test_per_frame_timesteps():
    """(B, t) levels that are all equal give exactly the (B,) result; a frame's own level changes
    the prediction; a wrong count is refused."""
    m = make()
    z, s, text, mask = inputs()
    one = m(z, s, text, mask)
    torch.testing.assert_close(m(z, s[:, None].expand(-1, 3), text, mask), one)
    levels = s[:, None].repeat(1, 3)
    levels[:, 0] = 0.0  # the first frame given clean
    assert not torch.allclose(m(z, levels, text, mask), one)
    with pytest.raises(ValueError, match="per-frame timesteps"):
        m(z, s[:, None].expand(-1, 2), text, mask)


@pytest.mark.parametrize("masked", [False, True])
def test_explicit_attention_matches_the_fused_kernel(masked):
    """The matmul path (CPU training, bf16) gives torch's fused attention and its gradients."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, requires_grad=True) for n in (10, 7, 7))
    mask = torch.rand(2, 1, 1, 7, generator=g) > 0.4 if masked else None
    if masked:
        mask[..., 0] = True  # every query has a key to attend to
    out = attention(q, k, v, mask)  # autograd records: the matmul path
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)
    # bf16: the same within bf16 rounding.
    low = attention(*(t.detach().bfloat16() for t in (q, k, v)), mask)
    torch.testing.assert_close(low.float(), ref.detach(), atol=3e-2, rtol=3e-2)


def test_temporal_patch_pads_in_front():
    """patch_t = 2 on a causal VAE's odd frame count: one zero frame goes in front, so frame 0
    shares its token with padding only; the output has the input's frames, each frame depends
    on its token partner, and the first frame's own level can differ from the rest's."""
    m = make(dataclasses.replace(TINY, patch_t=2))
    z, s, text, mask = inputs(t=5)
    out = m(z, s, text, mask)
    assert out.shape == z.shape and m.grid(5, 4, 6) == (3, 2, 3)
    # Frames (1, 2) form one token: changing frame 2 changes frame 1's prediction, not frame 0's.
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    out2 = m(z2, s, text, mask)
    assert not torch.allclose(out2[:, :, 1], out[:, :, 1])
    # Attention still mixes tokens, so frame 0 moves too, but the same input in front of zeros
    # gives exactly what the padded model computed: the padding is zeros.
    m1 = make(dataclasses.replace(TINY, patch_t=2))
    padded = torch.cat([torch.zeros_like(z[:, :, :1]), z], dim=2)
    torch.testing.assert_close(m1(padded, s, text, mask)[:, :, 1:], out)
    # Image-to-video levels: frame 0 clean, the rest noisy, is accepted and matters.
    levels = s[:, None].repeat(1, 5)
    levels[:, 0] = 0.0
    assert not torch.allclose(m(z, levels, text, mask)[:, :, 0], out[:, :, 0])


@pytest.mark.parametrize("attention", ["full", "factorized"])
def test_absolute_positions_tell_tokens_of_a_uniform_clip_apart(attention):
    """With RoPE alone, a clip whose patches are all the same gives every token the same output
    (identical values, whatever the relative scores); ``abs_pos`` gives each its own."""
    z, s, text, mask = inputs()
    uniform = z[:, :, :1, :1, :1].expand_as(z).contiguous()
    for abs_pos in (False, True):
        m = make(dataclasses.replace(TINY, attention=attention, abs_pos=abs_pos))
        with torch.no_grad():
            tokens = m.patchify(m(uniform, s, text, mask))  # (B, N, patch)
        spread = (tokens - tokens[:, :1]).abs().amax().item()
        assert (spread > 1e-3) == abs_pos, (abs_pos, spread)


def test_sincos_table_indexes_each_axis():
    from nanosora.models.dit import sincos_3d

    table = sincos_3d(3, 4, 5, 32)
    assert table.shape == (60, 32)
    grid = table.view(3, 4, 5, 32)
    # Index 0 on every axis: sines 0, cosines 1; tokens differ exactly when their indices do.
    axis = [torch.zeros(6), torch.ones(6)] + [torch.zeros(5), torch.ones(5)] * 2  # 12 + 10 + 10
    assert torch.equal(grid[0, 0, 0], torch.cat(axis))
    flat = table[:, None] - table[None]
    assert ((flat.abs().amax(-1) > 1e-6) == ~torch.eye(60, dtype=torch.bool)).all()


def test_text_positions_tell_word_order_apart():
    """Cross-attention and the pooled mean ignore the order of the text tokens: reversed words
    give the same output. ``text_pos`` makes the order matter, and starts as a no-op (its map is
    zero-initialised), so it loads a model trained without it; the pooled vector takes none."""
    z, s, text, mask = inputs()
    reversed_text = text.flip(1)
    plain = make()
    with torch.no_grad():
        torch.testing.assert_close(plain(z, s, reversed_text, mask), plain(z, s, text, mask))
    ordered = VideoDiT(dataclasses.replace(TINY, text_pos=True)).eval()
    missing, unexpected = ordered.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == ["text_pos.bias", "text_pos.weight"]
    with torch.no_grad():
        torch.testing.assert_close(ordered(z, s, text, mask), plain(z, s, text, mask))
        ordered.text_pos.weight.normal_(std=0.5)
        gap = (ordered(z, s, reversed_text, mask) - ordered(z, s, text, mask)).abs().amax()
        # the pooled vector (global conditioning) still sees the words only
        pooled = ordered.encode_text(text, mask).pooled
        torch.testing.assert_close(pooled, plain.encode_text(text, mask).pooled)
    assert gap > 1e-3, gap


REFINED = dataclasses.replace(TINY, text_refiner=2)


def test_untrained_text_refiner_passes_the_text_through():
    plain = make()
    refined = VideoDiT(REFINED).eval()
    missing, unexpected = refined.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("text_refiner.") for k in missing)
    assert refined.num_params() > plain.num_params()
    z, s, text, mask = inputs()
    with torch.no_grad():
        torch.testing.assert_close(refined(z, s, text, mask), plain(z, s, text, mask))


def test_text_refiner_mixes_words_and_ignores_padding():
    m = make(REFINED)
    z, s, text, mask = inputs()
    with torch.no_grad():
        refined = m.text_refiner(text, mask)
        # Changing the last word changes what the first word carries.
        other = text.clone()
        other[:, -1] += 1.0
        assert not torch.allclose(m.text_refiner(other, mask)[:, 0], refined[:, 0])
        # Garbage in padded positions changes neither the refined words nor the output.
        pad = torch.randn(2, 3, 16) * 100
        text2 = torch.cat([text, pad], 1)
        mask2 = torch.cat([mask, torch.zeros(2, 3, dtype=torch.bool)], 1)
        torch.testing.assert_close(m.text_refiner(text2, mask2)[:, :5], refined)
        torch.testing.assert_close(m(z, s, text2, mask2), m(z, s, text, mask), atol=1e-5, rtol=1e-5)


def test_negative_text_refiner_is_refused():
    with pytest.raises(ConfigError, match="dit.text_refiner"):
        dataclasses.replace(TINY, text_refiner=-1)
