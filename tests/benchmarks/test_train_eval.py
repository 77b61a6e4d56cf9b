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
def test_the_training_benchmark_trains_on_pairforge_exports_and_scores_them_beside_the_base_model(scifact, tmp_path):
    folder = train_and_test_sample(scifact, tmp_path / "scifact", queries=4, docs=20)
    # Settings (c) and (g) in one run, as a user runs several: (c) the whole pipeline on the judged train pairs (eight
    # stage processes), (g) the corpus alone with queries written for 3 of its documents by the packaged LLM,
    # round-tripped, mined and exported (the corpus's vectors from (c)'s cache). Each export's triplets are trained on
    # for one step and evaluated as the base model is. The other settings would each add a fine-tune, (e) and (f) the
    # generate and filter stages with their models too.
    flags = ["--seeds", "1", "--settings", "c,g", "--generated-docs", "3", "--batch-size", "2", "--max-steps", "1",
             "--work", str(tmp_path / "work")]  # fmt: skip
    printed = run("train_eval.py", str(folder), *flags)
    assert re.search(r"^g: [1-9]\d* triplets", printed, re.MULTILINE), printed[-2000:]
    for name in ("base", "c", "g"):
        rows, ndcg, ndcg_std, recall, recall_std = figures(printed, name)
        assert name == "base" or rows > 0, f"({name}): the export's triplets are the training rows"
        assert 0 < ndcg <= 1 and 0 < recall <= 1 and ndcg_std == recall_std == 0  # one seed: no spread
