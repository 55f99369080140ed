"""The duplicate-id filter: a numpy hash set that must agree with a Python set exactly."""

from __future__ import annotations

import numpy as np

from nanosora.data.ingest import SeenKeys, hash_keys


def test_seen_keys_matches_a_python_set_across_batches_and_growth() -> None:
    rng = np.random.default_rng(0)
    seen = SeenKeys(capacity=8)  # tiny: forces many rehashes and long probe chains
    reference: set[int] = set()
    for _ in range(20):
        # Few distinct values, so batches repeat keys within themselves and across batches.
        batch = rng.integers(1, 3000, size=500).astype(np.uint64)
        got = seen.add(batch)
        want = []
        for key in batch.tolist():
            want.append(key in reference)
            reference.add(key)
        assert got.tolist() == want
    assert len(seen) == len(reference)


def test_colliding_slots_and_string_keys() -> None:
    seen = SeenKeys(capacity=1 << 4)
    same_slot = np.array([16, 32, 48, 16, 64, 32], dtype=np.uint64)  # all start at slot 0
    assert seen.add(same_slot).tolist() == [False, False, False, True, False, True]
    keys = hash_keys(["-1hTK0wGrTg", "video7010", "-1hTK0wGrTg"])
    assert seen.add(keys).tolist() == [False, False, True] and keys.dtype == np.uint64
