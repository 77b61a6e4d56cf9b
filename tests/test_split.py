"""The train / dev split on hand-made pairs: queries sharing a positive stay together, and the split is seeded."""

from __future__ import annotations

from pairforge.pipeline import split


def test_dev_split_keeps_queries_sharing_a_positive_together():
    pairs = [(f"q{q}", f"d{q // 3}") for q in range(3000)] + [("q1", "d999999")]
    dev = split.dev_queries(pairs, 0.1, seed=5)
    assert 0.05 < len(dev) / 3000 < 0.15
    for group in range(1000):
        members = {f"q{q}" for q in range(3 * group, 3 * group + 3)}
        assert members <= dev or not members & dev, "a positive's queries are all train or all dev"
    assert split.dev_queries(pairs, 0.1, seed=5) == dev and split.dev_queries(pairs, 0.1, seed=6) != dev
    assert split.dev_queries(pairs, 0.0, seed=5) == set()
