"""benchmarks/own_label_judge.py on a small SciFact sample: it trains, judges and prints every signal's figures."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import Counter

from tests.conftest import REPO, write_beir_sample


def figures(stdout: str, signals: int = 6) -> list[tuple[str, ...]]:
    """Each signal's (name, AUC, caught at 10%, caught at 20%), checked: a bigger budget catches at least as many."""
    found = re.findall(r"^(.+?)\s+(0\.\d{3}|1\.000)\s+(\d+)\s+(\d+)$", stdout, re.MULTILINE)
    hidden = int(re.search(r"(\d+) of them hidden positives", stdout)[1])
    assert len(found) == signals and all(int(a) <= int(b) <= hidden for _, _, a, b in found), stdout
    return found


def test_the_own_label_judge_benchmark_runs_cross_fitted_on_a_sample(scifact, cross_encoder_dir, tmp_path):
    source = write_beir_sample(scifact, tmp_path / "beir", queries=60, docs=200)
    with open(source / "qrels" / "train.tsv") as handle:
        per_query = Counter(row["query-id"] for row in csv.DictReader(handle, delimiter="\t"))
    single, multi = sum(n == 1 for n in per_query.values()), sum(n >= 2 for n in per_query.values())
    script = [sys.executable, "benchmarks/own_label_judge.py", str(source), "--depth", "10", "--negatives", "1"]
    done = subprocess.run(script, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    # Trained on the single-positive queries only (a positive and at most one negative each), judged the others'.
    pairs = re.search(rf"trained on {single} single-positive queries \((\d+) pairs", done.stdout)
    assert pairs and single < int(pairs[1]) <= 2 * single, done.stdout
    assert f"judged {10 * multi} top-10 candidates of {multi} multi-positive queries" in done.stdout, done.stdout
    own = figures(done.stdout)
    # Another cross-encoder, measured the same way on the same candidates: only its own row changes.
    judged = subprocess.run([*script, "--judge", str(cross_encoder_dir)], cwd=REPO, capture_output=True, text=True)
    assert judged.returncode == 0 and f"judge {cross_encoder_dir}" in judged.stdout, judged.stderr[-3000:]
    other = figures(judged.stdout)
    assert [f for f in other if f[0] != "the judge"][:4] == own[:4] and other[4][0] == "the judge"
    # No cross-encoder at all: the bi-encoder's signals, the same figures.
    alone = subprocess.run([*script, "--judge", "none"], cwd=REPO, capture_output=True, text=True)
    assert alone.returncode == 0 and "bi-encoder signals only" in alone.stdout, alone.stderr[-3000:]
    assert figures(alone.stdout, signals=4) == own[:4] and own[3][0] == "closeness to the pair"
