"""benchmarks/embed_throughput.py on a few SciFact abstracts, so that a change of the Encoder it times fails here:
it finishes, and prints pairforge's Encoder beside sentence-transformers' encode with finite figures."""

from __future__ import annotations

import pytest

from tests.benchmarks.tiny import figures, run


@pytest.mark.slow
def test_the_throughput_benchmark_prints_the_encoder_beside_the_peer(scifact):
    # bf16 alone: one Encoder load, with vectors that differ from the peer's. Without --ray: its Ray pools and
    # loopback cluster start Ray three times, most of a minute on two cores.
    printed = run("embed_throughput.py", str(scifact / "corpus.jsonl"), "--limit", "4", "--settings", "torch:bf16")
    for label in (("sentence-transformers encode (peer)", "torch:fp32"), ("Encoder in process", "torch:bf16")):
        rate, times_peer, min_cosine, max_difference = figures(printed, *label)
        assert rate > 0 and times_peer > 0 and 0.99 < min_cosine <= 1.0001 and max_difference < 0.05, label
