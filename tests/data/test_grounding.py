"""Word grounding targets (data/grounding.py), the DiT's cross-attention probabilities and the
grounding loss."""

import numpy as np
import pytest
import torch

from nanosora.config import DiTConfig, TextEncoderConfig
from nanosora.data.grounding import (
    MIN_COVER,
    caption_targets,
    grounding_loss,
    latent_frame_groups,
    token_targets,
    token_words,
    word_kind,
)
from nanosora.models.dit import VideoDiT
from nanosora.models.text_encoder import load_text_encoder

T = 17


def still(shape, colors, x, y, side=12, depth=0):
    colors = [colors] * T if isinstance(colors, str) else colors
    return {"shape": shape, "color": colors, "x": [x] * T, "y": [y] * T, "side": [side] * T,
            "angle": [0.0] * T, "depth": depth}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return load_text_encoder(TextEncoderConfig()).tokenizer


def test_word_kinds_cover_synonyms_and_plurals() -> None:
    assert word_kind("Red") == ("color", "red")
    assert word_kind("balls") == ("shape", "circle")
    assert word_kind("box") == ("shape", "square")
    assert word_kind("triangles") == ("shape", "triangle")
    assert word_kind("left") is None and word_kind("and") is None


def test_token_words_follow_the_tokenizer(tokenizer) -> None:
    words = token_words(tokenizer, "a red circle and a cyan square", 16)
    ids = tokenizer("a red circle and a cyan square")["input_ids"]
    assert len(words) == 16 and words[len(ids) :] == [None] * (16 - len(ids))
    assert words[0] is None and words[len(ids) - 1] is None  # [CLS] and [SEP]
    assert words[1:4] == ["a", "red", "circle"]
    assert words.count("cyan") == len(tokenizer.tokenize("cyan"))  # every word piece


def test_targets_put_each_word_on_its_own_object(tokenizer) -> None:
    # a red circle in the top-left token cell, a blue square in the bottom-right one (4 x 4 grid)
    truth = {"objects": [still("circle", "red", 2, 2), still("square", "blue", 50, 50)]}
    words = token_words(tokenizer, "a red circle and a blue square", 12)
    maps = caption_targets(truth, words, T, (4, 4))
    assert maps.shape == (12, T, 4, 4)
    on = {w: np.argwhere(maps[i].any(0)).tolist() for i, w in enumerate(words) if maps[i].any()}
    assert on == {"red": [[0, 0]], "circle": [[0, 0]], "blue": [[3, 3]], "square": [[3, 3]]}
    assert not maps[words.index("and")].any() and not maps[0].any()
    # a 12 px circle fills about 113 of the cell's 256 pixels
    assert 0.4 < maps[words.index("red"), 0, 0, 0] / 255 < 0.5


def test_a_colour_follows_a_change_and_hidden_pixels_are_nobodys(tokenizer) -> None:
    changing = still("circle", ["red"] * 8 + ["green"] * 9, 2, 2)
    front = still("square", "white", 50, 50, side=14, depth=1)
    behind = still("triangle", "blue", 51, 51, side=10)  # wholly behind the square
    truth = {"objects": [changing, front, behind]}
    words = token_words(tokenizer, "a red circle turns green", 10)
    maps = caption_targets(truth, words, T, (4, 4))
    red, green = maps[words.index("red")], maps[words.index("green")]
    assert red[:8].any((1, 2)).all() and not red[8:].any()
    assert green[8:].any((1, 2)).all() and not green[:8].any()
    words = token_words(tokenizer, "a blue triangle", 6)
    assert not caption_targets(truth, words, T, (4, 4)).any()


def test_latent_frame_groups() -> None:
    assert latent_frame_groups(17, 17) == [range(i, i + 1) for i in range(17)]
    assert latent_frame_groups(17, 5) == [range(0, 1), range(1, 5), range(5, 9), range(9, 13), range(13, 17)]  # fmt: skip
    with pytest.raises(ValueError, match="17 frames do not map onto 6"):
        latent_frame_groups(17, 6)


def test_token_targets_pad_time_like_the_dit() -> None:
    maps = torch.zeros(1, 2, 3, 2, 2)  # 3 latent frames, 2 x 2 cells, 2 words
    maps[0, 0, 0, 0, 1] = 1.0  # word 0 in frame 0 only: the first token frame (padding + frame 0)
    maps[0, 1, 2, 1, 0] = MIN_COVER / 2  # below the cover threshold: no target
    g = token_targets(maps, patch_t=2)
    assert g.shape == (1, 8, 2)
    assert g[0, :, 0].nonzero().flatten().tolist() == [1] and not g[0, :, 1].any()


def test_grounding_loss_is_zero_on_target_and_excludes_dropped_rows() -> None:
    targets = torch.zeros(2, 4, 3, dtype=torch.bool)
    targets[:, 0, 1] = True  # word 1 is on token 0
    inside = torch.zeros(2, 4, 3)
    inside[:, :, 0] = 1.0
    inside[:, 0] = torch.tensor([0.0, 1.0, 0.0])
    per_row, words = grounding_loss(inside, targets)
    assert per_row.tolist() == [0.0, 0.0] and words.tolist() == [1, 1]
    uniform = torch.full((2, 4, 3), 1 / 3)
    per_row, _ = grounding_loss(uniform, targets, keep=torch.tensor([True, False]))
    assert per_row[0].item() == pytest.approx((1 - 0.25) ** 2) and per_row[1].item() == 0.0


def test_cross_probs_are_the_attention_the_model_uses() -> None:
    torch.manual_seed(0)
    dit = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=2, heads=2, text_dim=16)).eval()
    for p in dit.parameters():  # a trained-looking model: gates open
        torch.nn.init.normal_(p, std=0.2)
    z, t = torch.randn(2, 4, 2, 4, 4), torch.rand(2)
    text, mask = torch.randn(2, 5, 16), torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    probs: list[torch.Tensor] = []
    with torch.no_grad():
        plain = dit(z, t, text, mask)
        collected = dit(z, t, text, mask, cross_probs=probs)
    torch.testing.assert_close(collected, plain, rtol=1e-4, atol=1e-5)
    assert len(probs) == 2 and probs[0].shape == (2, 8, 5)
    torch.testing.assert_close(probs[0].sum(-1), torch.ones(2, 8))
    assert (probs[1][1, :, 3:] == 0).all()


def test_training_on_the_grounding_loss_moves_attention_onto_the_objects() -> None:
    torch.manual_seed(0)
    dit = VideoDiT(DiTConfig(in_channels=4, dim=32, depth=2, heads=2, text_dim=16))
    z, t = torch.randn(4, 4, 2, 4, 4), torch.rand(4)
    text, mask = torch.randn(4, 6, 16), torch.ones(4, 6, dtype=torch.bool)
    targets = torch.zeros(4, 8, 6, dtype=torch.bool)
    for b in range(4):  # word 1 on two tokens, word 2 on two others, different per clip
        targets[b, [b, b + 4], 1] = True
        targets[b, [(b + 2) % 4, (b + 2) % 4 + 4], 2] = True

    @torch.no_grad()
    def share() -> float:
        probs: list[torch.Tensor] = []
        dit(z, t, text, mask, cross_probs=probs)
        p = torch.stack(probs).mean(0)
        return float(((p * targets).sum(1) / p.sum(1))[targets.any(1)].mean())

    before = share()
    opt = torch.optim.Adam(dit.parameters(), lr=3e-3)
    for _ in range(60):
        probs: list[torch.Tensor] = []
        dit(z, t, text, mask, cross_probs=probs)
        per_row, words = grounding_loss(torch.stack(probs).mean(0), targets)
        opt.zero_grad()
        (per_row.sum() / words.sum()).backward()
        opt.step()
    assert before < 0.35 and share() > 0.8  # chance is 2 of 8 tokens
