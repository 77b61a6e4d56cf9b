"""benchmarks/mine_vs_st.py on a tiny sample, so that a change of a log line or a schema it reads fails here: it
finishes, prints its side-by-side table, and its ratios are numbers."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.conftest import DATASETS, REPO, need


@pytest.mark.slow
def test_the_peer_benchmark_runs_on_a_tiny_sample_and_prints_its_ratios(tmp_path):
    need(DATASETS / "scifact" / "corpus.jsonl", "SciFact")
    figures = tmp_path / "figures.json"
    script = [sys.executable, "benchmarks/mine_vs_st.py", "--max-queries", "5", "--max-docs", "40",
              "--json", str(figures)]  # fmt: skip
    done = subprocess.run(script, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "embed texts/s: stage log / encode() only" in done.stdout
    found = json.loads(figures.read_text())
    assert all(math.isfinite(value) and value > 0 for value in found["ratios"].values()), found["ratios"]
    assert found["pairforge"]["texts"] >= 40
    # Where each peak was, by process: the stage's own process among them, and they add up to the peak.
    stage = max(found["pairforge"]["stages"].values(), key=lambda s: s["peak_mib"])
    assert any(name.startswith("python -m pairforge.") for name in stage["peak_by_process"])
    assert sum(mib for _, mib in stage["peak_by_process"].values()) == pytest.approx(stage["peak_mib"])
    assert "where the peaks are (PSS MiB by process): pairforge's" in done.stdout
