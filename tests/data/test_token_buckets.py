"""TokenBudgetBatchSampler: one (T, H, W) per batch, never over the token budget, every sample once."""

import numpy as np
import pytest

from nanosora.data.buckets import TokenBudgetBatchSampler, tokens_of

BUCKETS = [(1, 256, 256), (17, 256, 256), (17, 144, 256), (17, 256, 144), (49, 256, 256)]


def mixed_sizes(n: int, seed: int = 0) -> np.ndarray:
    """A mixed-resolution manifest: images, short and long clips, landscape, portrait, square."""
    rng = np.random.default_rng(seed)
    frames = rng.choice([1, 17, 33, 49, 97], n)
    shapes = np.array([(256, 256), (288, 512), (512, 288), (720, 1280), (1080, 1920)])
    hw = shapes[rng.integers(0, len(shapes), n)]
    return np.column_stack([frames, hw])


def test_tokens_of_matches_the_vae_and_patch_arithmetic() -> None:
    assert tokens_of((17, 256, 256)) == 5 * 16 * 16
    assert tokens_of((1, 256, 256)) == 256  # an image is one latent frame
    assert tokens_of((49, 144, 256)) == 13 * 9 * 16


@pytest.mark.parametrize("multiple_of", [1, 2])
def test_budget_respected_and_every_sample_seen_once(multiple_of: int) -> None:
    sizes = mixed_sizes(500)
    budget = 4 * tokens_of((49, 256, 256))
    sampler = TokenBudgetBatchSampler(sizes, BUCKETS, budget, multiple_of=multiple_of, seed=3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen: list[int] = []
        for batch in batches:
            (shape,) = {sampler.buckets[sampler.bucket_of[i]] for i in batch}  # one shape
            assert len(batch) * tokens_of(shape) <= budget
            assert len(batch) % multiple_of == 0
            t, h, w = shape
            assert all(sizes[i][0] >= t and sizes[i][1] * sizes[i][2] >= h * w for i in batch)
            seen.extend(batch)
        counts = np.bincount(seen, minlength=len(sizes))
        assert counts.min() == 1  # every sample at least once ...
        if multiple_of == 1:
            assert counts.max() == 1  # ... and exactly once
        else:  # top-ups: at most multiple_of - 1 extra per bucket
            assert counts.sum() - len(sizes) <= (multiple_of - 1) * len(BUCKETS)
    # Images get big batches, long clips small ones: the budget, not a fixed batch size.
    assert sampler.batch_sizes[0] > sampler.batch_sizes[1] > sampler.batch_sizes[-1]


def test_order_depends_on_seed_and_epoch_only() -> None:
    sizes = mixed_sizes(200)
    a = TokenBudgetBatchSampler(sizes, BUCKETS, 20_000, seed=1)
    b = TokenBudgetBatchSampler(sizes, BUCKETS, 20_000, seed=1)
    assert a.batches(4) == b.batches(4) and a.batches(4) != a.batches(5)


def test_sample_no_bucket_fits_is_an_error_or_dropped() -> None:
    sizes = [(17, 256, 256), (9, 256, 256), (17, 64, 64)]  # 9 frames and 64 px fit no bucket
    with pytest.raises(ValueError, match="2 of 3 samples fit no bucket"):
        TokenBudgetBatchSampler(sizes, [(17, 256, 256)], 10_000)
    s = TokenBudgetBatchSampler(sizes, [(17, 256, 256), (49, 256, 256)], 20_000, unfit="drop")
    assert s.dropped.tolist() == [1, 2] and [b for b in s] == [[0]]
    assert "2 samples fit no bucket" in s.summary() and "empty" in s.summary()


def test_bucket_over_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot hold 2 of them"):
        TokenBudgetBatchSampler([(49, 256, 256)], [(49, 256, 256)], 4000, multiple_of=2)
