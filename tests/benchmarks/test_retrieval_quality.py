"""benchmarks/retrieval_quality.py on a tiny BEIR folder from SciFact, so that a change of the Encoder it runs
fails here: it finishes, and prints each setting's throughput, agreement and retrieval figures, finite and in range."""

from __future__ import annotations

import pytest

from tests.benchmarks.tiny import figures, run
from tests.conftest import write_beir_sample


@pytest.mark.slow
def test_the_retrieval_benchmark_scores_each_setting_on_a_tiny_folder(scifact, tmp_path):
    # The corpus is the 5 queries' positives only: under 100 documents, the last one relevant, so a FAISS result
    # padded with row -1 must not count as that document (nDCG and recall then went far above 1).
    folder = write_beir_sample(scifact, tmp_path / "beir", queries=5, docs=0)
    printed = run("retrieval_quality.py", str(folder), "--split", "train", "--settings", "torch:fp32,torch:bf16")
    for setting in ("torch:fp32", "torch:bf16"):
        rate, min_cosine, ndcg, recall = figures(printed, setting)
        assert rate > 0 and 0.99 < min_cosine <= 1.0001 and 0 < ndcg <= 1 and 0 < recall <= 1, setting
