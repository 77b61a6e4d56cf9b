"""benchmarks/train_eval.py at its smallest, so that a change of the pipeline's params, stages or export that it
drives, or of the training API it calls, fails here: the pipeline on a few SciFact train queries, one training step
on its triplets, and nDCG@10 / Recall@100 on a few test queries, printed beside the base model's."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from tests.benchmarks.tiny import figures, run
from tests.conftest import train_qrels, write_sample


def first_queries(rows: list[dict], count: int) -> list[dict]:
    """The qrels rows of the first `count` queries."""
    kept = set(list(dict.fromkeys(row["query-id"] for row in rows))[:count])
    return [row for row in rows if row["query-id"] in kept]


def write_qrels(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["query-id", "corpus-id", "score"], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def train_and_test_sample(scifact: Path, out: Path, queries: int, docs: int) -> Path:
    """A BEIR folder of SciFact's first `queries` train and first `queries` test queries, their positives and other
    documents up to `docs`, with a qrels file per split (the script trains on one and scores on the other)."""
    train = first_queries(train_qrels(scifact), queries)
    with open(scifact / "qrels" / "test.tsv") as handle:
        test = first_queries(list(csv.DictReader(handle, delimiter="\t")), queries)
    write_sample(scifact, out, train + test, docs)
    write_qrels(out / "qrels" / "train.tsv", train)
    write_qrels(out / "qrels" / "test.tsv", test)
    return out


@pytest.mark.slow
def test_the_training_benchmark_trains_on_a_pairforge_export_and_scores_it_beside_the_base_model(scifact, tmp_path):
    folder = train_and_test_sample(scifact, tmp_path / "scifact", queries=4, docs=20)
    # Setting (c) alone: the whole pipeline runs (seven stage processes), its triplet export is read, trained on for
    # one step and evaluated as the base model is. The others would each add a fine-tune, (e) the generate and
    # filter stages with their models too.
    flags = ["--seeds", "1", "--settings", "c", "--batch-size", "4", "--max-steps", "1",
             "--work", str(tmp_path / "work")]  # fmt: skip
    printed = run("train_eval.py", str(folder), *flags)
    base, trained = figures(printed, "base"), figures(printed, "c")
    assert trained[0] > 0, "the export's triplets are the training rows"
    for _, ndcg, ndcg_std, recall, recall_std in (base, trained):
        assert 0 < ndcg <= 1 and 0 < recall <= 1 and ndcg_std == recall_std == 0  # one seed: no spread


@pytest.mark.slow
def test_the_training_benchmark_trains_on_generated_queries_with_the_qrels_withheld(scifact, tmp_path):
    folder = train_and_test_sample(scifact, tmp_path / "scifact", queries=4, docs=20)
    # Setting (g): the corpus alone, queries written for 3 of its documents by the packaged LLM, round-tripped,
    # mined and exported, then one training step and the test queries scored.
    flags = ["--seeds", "1", "--settings", "g", "--generated-docs", "3", "--batch-size", "2", "--max-steps", "1",
             "--work", str(tmp_path / "work")]  # fmt: skip
    printed = run("train_eval.py", str(folder), *flags)
    assert re.search(r"^g: [1-9]\d* triplets", printed, re.MULTILINE), printed[-2000:]
    trained = figures(printed, "g")
    assert trained[0] > 0, "the kept generated pairs are the training rows"
    assert 0 < trained[1] <= 1 and 0 < trained[3] <= 1
