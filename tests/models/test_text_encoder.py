"""TextEncoder: shapes, padding invariance, determinism, frozen weights, offline loading errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from nanosora.config import TextEncoderConfig
from nanosora.models.text_encoder import (
    TextEncoder,
    default_minilm_path,
    load_text_encoder,
    pad_features,
    split_clauses,
)


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    return load_text_encoder(TextEncoderConfig())


def test_shapes_dtype_and_mask(encoder: TextEncoder) -> None:
    prompts = ["a red circle moving left", "", "cyan triangle"]
    feats, mask = encoder(prompts)
    tokens = encoder.tokenizer(prompts)["input_ids"]
    lengths = torch.tensor([len(t) for t in tokens])
    assert encoder.dim == 384
    assert feats.shape == (3, int(lengths.max()), 384)
    assert feats.dtype == torch.float32 and mask.dtype == torch.bool
    assert torch.equal(mask.sum(1), lengths)
    # The mask is a prefix of True; the empty prompt still has its [CLS] [SEP] tokens.
    assert mask[1].sum() == 2 and mask[:, 0].all()
    assert torch.equal(mask, torch.arange(mask.shape[1]) < lengths[:, None])
    assert (feats[~mask] == 0).all()
    assert feats[mask].abs().sum(-1).gt(0).all()


def test_layers_concatenate_hidden_states(encoder: TextEncoder) -> None:
    """text.layers=(-1, 0): the last layer's features, then the embedding layer's, per token;
    the word embeddings tell "left" from "right" apart more than the last layer does."""
    both = TextEncoder(TextEncoderConfig(layers=(-1, 0)))
    prompts = ["a red circle moving left", "a red circle moving right"]
    feats, mask = both(prompts)
    last, mask_last = encoder(prompts)
    assert both.dim == 768 and feats.shape[-1] == 768 and torch.equal(mask, mask_last)
    torch.testing.assert_close(feats[..., :384], last, rtol=0, atol=1e-6)
    assert (feats[~mask] == 0).all()
    word = int(mask[0].sum()) - 2  # the token before [SEP]
    cos = torch.nn.functional.cosine_similarity
    assert cos(feats[0, word, 384:], feats[1, word, 384:], dim=0) < cos(last[0, word], last[1, word], dim=0) - 0.1  # fmt: skip


@pytest.mark.parametrize(
    ("prompt", "clauses"),
    [
        ("a big red square and a small blue circle", ["a big red square", "a small blue circle"]),
        ("Look: a green square moves up while a red one moves down.",
         ["Look", "a green square moves up", "a red one moves down"]),
        ("there is a white square, and a cyan ball passes behind it",
         ["there is a white square", "a cyan ball passes behind it"]),
        ("a sandy band", ["a sandy band"]),  # 'and' inside words does not cut
        ("", []),
    ],
)  # fmt: skip
def test_split_clauses(prompt: str, clauses: list[str]) -> None:
    assert split_clauses(prompt) == clauses


@pytest.mark.parametrize(
    ("prompt", "clauses"),
    [
        ("a red circle above a blue square", ["a red circle above", "a blue square"]),
        ("On a black background, a yellow square to the left of a blue triangle.",
         ["On a black background", "a yellow square to the left of", "a blue triangle"]),
        ("there is a white square, and a cyan ball passes behind it",
         ["there is a white square", "a cyan ball passes behind", "it"]),
        ("a green square moves to the left", ["a green square moves to the left"]),
        ("video of a red ball", ["video of a red ball"]),  # 'of' alone is no relation
        ("a big red square and a small blue circle", ["a big red square", "a small blue circle"]),
    ],
)  # fmt: skip
def test_split_clauses_at_relations(prompt: str, clauses: list[str]) -> None:
    """text.clause_split=relations: the subject's clause keeps its place preposition."""
    assert split_clauses(prompt, at_relations=True) == clauses


def test_relation_clauses_tell_which_thing_is_on_top(encoder: TextEncoder) -> None:
    """Cut at the relation, "A above B" and "B above A" give different clause tokens; cut at
    conjunctions only, both are one clause of the same words in another order."""
    cfg = TextEncoderConfig(clauses=3, clause_split="relations")
    at = TextEncoder(cfg)
    prompts = ["a red circle above a blue square", "a blue square above a red circle"]
    feats, mask = at(prompts)
    n = mask.sum(1)
    assert n.tolist() == (encoder(prompts)[1].sum(1) + 2).tolist()
    alone, alone_mask = encoder(["a red circle above", "a blue square", "a blue square above"])
    pooled = (alone * alone_mask[..., None]).sum(1) / alone_mask.sum(1, keepdim=True)
    torch.testing.assert_close(feats[0, n[0] - 2 : n[0]], pooled[:2], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(feats[1, n[1] - 2], pooled[2], rtol=1e-4, atol=1e-5)
    cos = torch.nn.functional.cosine_similarity
    red_on_top = feats[0, n[0] - 2]  # the clause that says what is on top differs between the two
    assert cos(red_on_top, feats[1, n[1] - 2], dim=0) < 0.95
    with pytest.raises(ValueError, match="text.clause_split must be conjunctions or relations"):
        TextEncoderConfig(clause_split="words")  # type: ignore[arg-type]


def test_clause_tokens_follow_the_words(encoder: TextEncoder) -> None:
    """text.clauses=N: each prompt's word tokens unchanged, then one token per clause (at most
    N), the clause encoded alone and mean-pooled; the empty prompt gets none."""
    with_clauses = TextEncoder(TextEncoderConfig(clauses=2))
    prompts = ["a big red square, a small blue circle and a green triangle", "a red ball", ""]
    feats, mask = with_clauses(prompts)
    words, word_mask = encoder(prompts)
    n = word_mask.sum(1)
    assert torch.equal(mask.sum(1), n + torch.tensor([2, 1, 0]))
    assert torch.equal(mask, torch.arange(mask.shape[1]) < mask.sum(1, keepdim=True))
    for i in range(3):
        torch.testing.assert_close(feats[i, : n[i]], words[i, : n[i]], rtol=0, atol=1e-6)
    alone, alone_mask = encoder(["a small blue circle", "a red ball"])
    pooled = (alone * alone_mask[..., None]).sum(1) / alone_mask.sum(1, keepdim=True)
    torch.testing.assert_close(feats[0, n[0] + 1], pooled[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(feats[1, n[1]], pooled[1], rtol=1e-4, atol=1e-5)
    assert (feats[~mask] == 0).all()
    cos = torch.nn.functional.cosine_similarity
    red_square = feats[0, n[0]]  # "a big red square" holds its own words, not the circle's
    assert cos(red_square, pooled[1], dim=0) > cos(red_square, pooled[0], dim=0)
    with pytest.raises(ValueError, match="text.clauses must be >= 0"):
        TextEncoderConfig(clauses=-1)


def test_layers_out_of_range_or_repeated_are_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"text.layers \(-1, 9\): minilm has hidden states 0..6"):
        TextEncoder(TextEncoderConfig(layers=(-1, 9)))
    with pytest.raises(ValueError, match="distinct"):
        TextEncoderConfig(layers=(0, 0))
    with pytest.raises(ValueError, match="distinct"):
        TextEncoderConfig(layers=())


def test_truncated_at_max_length() -> None:
    enc = TextEncoder(TextEncoderConfig(max_length=5))
    feats, mask = enc(["a very long prompt " * 20, "x"])
    assert feats.shape == (2, 5, 384) and mask[0].all()


def test_padding_does_not_change_real_tokens(encoder: TextEncoder) -> None:
    short = "a red circle moving left"
    alone, mask_alone = encoder([short])
    batch, mask_batch = encoder(
        [short, "a small yellow triangle slides slowly up the black canvas"]
    )
    n = int(mask_alone.sum())
    assert mask_batch[0].sum() == n and batch.shape[1] > n
    torch.testing.assert_close(batch[0, :n], alone[0, :n], rtol=0, atol=1e-5)


def test_deterministic(encoder: TextEncoder) -> None:
    a, _ = encoder(["a blue square moving up", ""])
    b, _ = encoder(["a blue square moving up", ""])
    assert torch.equal(a, b)


def test_frozen(encoder: TextEncoder) -> None:
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.training and not encoder.model.training
    feats, _ = encoder(["a green circle"])
    assert not feats.requires_grad


def test_semantic_sanity(encoder: TextEncoder) -> None:
    feats, mask = encoder(
        ["a red circle moving left", "a red ball moving to the left", "a blue square moving up"]
    )
    pooled = (feats * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    cos = torch.nn.functional.cosine_similarity
    assert cos(pooled[0], pooled[1], dim=0) > cos(pooled[0], pooled[2], dim=0)


def test_load_text_encoder_is_cached() -> None:
    assert load_text_encoder(TextEncoderConfig()) is load_text_encoder(TextEncoderConfig())


def test_pad_features() -> None:
    a, b = torch.randn(3, 4), torch.randn(6, 4)
    feats, mask = pad_features([a, b])
    assert feats.shape == (2, 6, 4) and mask.sum(1).tolist() == [3, 6]
    assert torch.equal(feats[0, :3], a) and (feats[0, 3:] == 0).all()
    feats, mask = pad_features([a, b], max_len=5)
    assert feats.shape == (2, 5, 4) and mask.sum(1).tolist() == [3, 5]
    assert torch.equal(feats[1], b[:5])
    with pytest.raises(ValueError):
        pad_features([])
    with pytest.raises(ValueError):
        pad_features([a, torch.randn(2, 5)])


def test_pad_features_matches_encoder(encoder: TextEncoder) -> None:
    # Caching path: unpadded per-prompt features re-padded give the batch output back.
    feats, mask = encoder(["a red circle", "an orange square slides to the right"])
    repadded, remask = pad_features([f[m] for f, m in zip(feats, mask, strict=True)])
    assert torch.equal(repadded, feats) and torch.equal(remask, mask)


# ---------------------------------------------------------------------------------------------
# t5 / clip: tiny random models saved locally, loaded through the real code path, no downloads.
# ---------------------------------------------------------------------------------------------


def _save_tiny(kind: str, path: Path) -> None:
    torch.manual_seed(0)
    if kind == "t5":
        config = T5Config(
            vocab_size=30522, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, pad_token_id=0
        )
        model = T5EncoderModel(config)
    else:
        config = CLIPTextConfig(
            vocab_size=30522,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            pad_token_id=0,
            bos_token_id=101,
            eos_token_id=102,
        )
        model = CLIPTextModel(config)
    model.save_pretrained(path)
    # Real T5/CLIP tokenizers are not available offline; the MiniLM one exercises the same
    # AutoTokenizer path (and its vocabulary fits the tiny models' embedding tables).
    AutoTokenizer.from_pretrained(default_minilm_path(), local_files_only=True).save_pretrained(
        path
    )


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_local_t5_and_clip(kind: str, tmp_path: Path) -> None:
    _save_tiny(kind, tmp_path)
    enc = TextEncoder(TextEncoderConfig(kind=kind, path=str(tmp_path), max_length=64))
    assert enc.dim == 32 and not any(p.requires_grad for p in enc.parameters())
    short = "a red circle"
    alone, mask_alone = enc([short])
    batch, mask = enc([short, "", "a purple circle moving down across the frame"])
    assert batch.shape[:2] == mask.shape and batch.shape[2] == 32
    assert mask.sum(1).min() >= 1
    n = int(mask_alone.sum())
    torch.testing.assert_close(batch[0, :n], alone[0, :n], rtol=0, atol=1e-5)
    if kind == "clip":
        # Absolute positions: max_length is clamped to the model's position table.
        assert enc([short * 20])[0].shape[1] == 16


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_missing_path_is_clear_error(kind: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="nope.*does not exist"):
        TextEncoder(TextEncoderConfig(kind=kind, path=str(missing)))


@pytest.mark.parametrize("kind", ["t5", "clip"])
def test_dir_without_config_is_clear_error(kind: str, tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=re.escape(f"config.json not found in {tmp_path}")):
        TextEncoder(TextEncoderConfig(kind=kind, path=str(tmp_path)))


def test_wrong_model_family_is_clear_error(tmp_path: Path) -> None:
    _save_tiny("t5", tmp_path)
    with pytest.raises(ValueError, match="model_type='t5'.*clip"):
        TextEncoder(TextEncoderConfig(kind="clip", path=str(tmp_path)))


def test_missing_tokenizer_is_clear_error(tmp_path: Path) -> None:
    _save_tiny("t5", tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        TextEncoder(TextEncoderConfig(kind="t5", path=str(tmp_path)))
