"""benchmarks/scale.py at one tiny size, so that a change of the artifacts or manifests it writes and reads around
the index and mine stages fails here: it finishes, prints pairforge's wall, memory and recall@10 beside the peer's,
and its figures are finite numbers."""

from __future__ import annotations

import json
import math

import pytest

from tests.benchmarks.tiny import run


@pytest.mark.slow
def test_the_scale_benchmark_prints_wall_memory_and_recall_beside_the_peer_at_a_tiny_size(tmp_path):
    out = tmp_path / "figures.json"
    # HNSW32, an approximate index: its recall@10 is the index stage's measure, read from the manifest (a Flat
    # index's would be 1.0 without reading anything).
    printed = run("scale.py", "--sizes", "1000", "--factory", "HNSW32", "--json", str(out))
    (row,) = json.loads(out.read_text())
    pf, peer = row["pairforge"], row["peer"]
    assert pf["error"] is None and peer["error"] is None, row
    measured = [pf["wall_s"], pf["peak_mib"], peer["wall_s"], peer["peak_mib"]]
    assert all(math.isfinite(value) and value > 0 for value in measured), row
    assert 0 < pf["recall_at_10"] <= 1 and 0 <= row["agree"] <= 1, row
    printed_row = [line for line in printed.splitlines() if line.strip().startswith("1,000 / 100")][-1]
    assert f"{pf['recall_at_10']:.4f}" in printed_row and f"{peer['wall_s']:,.1f}" in printed_row, printed_row
    assert "pf R@10" in printed and "recall@10 by efSearch (128: " in printed, "the table to choose a setting by"
