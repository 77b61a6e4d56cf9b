"""The Python API: a `datasets.Dataset` of pairs mined and filtered in a notebook, through the stages `dvc repro`
runs, without DVC."""

from __future__ import annotations

import datasets
import pytest

import pairforge
from pairforge.pipeline import artifacts

ANIMALS = ["cat", "dog", "horse", "parrot", "goat", "rabbit", "camel", "otter"]
FOODS = ["fish", "bones", "hay", "seeds", "grass", "carrots", "dates", "clams"]
PAIRS = [
    {"question": f"What does the {animal} eat?", "answer": f"The {animal} mostly eats {food}."}
    for animal, food in zip(ANIMALS, FOODS)
]
EXTRA = [f"The {animal} sleeps in the {place}." for animal, place in zip(ANIMALS, ["barn", "sun", "rain", "cage"])]


def test_mine_hard_negatives_on_a_dataset_returns_filtered_triplets(tmp_path):
    found = pairforge.mine_hard_negatives(
        datasets.Dataset.from_list(PAIRS), "question", "answer", corpus=EXTRA, num_negatives=2, project=tmp_path,
    )  # fmt: skip
    assert isinstance(found, datasets.Dataset) and {"anchor", "positive", "negative"} <= set(found.column_names)
    answer = {pair["question"]: pair["answer"] for pair in PAIRS}
    assert set(found["anchor"]) == set(answer)
    assert found.num_rows <= 2 * len(PAIRS)
    documents = set(answer.values()) | set(EXTRA)
    for row in found:
        assert row["positive"] == answer[row["anchor"]]
        assert row["negative"] in documents and row["negative"] != row["positive"]
    corpus = artifacts.read(tmp_path / "data/ingested/corpus")
    extra = {i for i, text in zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()) if text in EXTRA}
    inspected = set(artifacts.read(tmp_path / "data/mined/candidates", ["doc_id"])["doc_id"].to_pylist())
    assert len(extra) == len(EXTRA) and extra <= inspected, "the unlabelled corpus is mined too"
    assert (tmp_path / "data/export/README.md").is_file(), "the run's card and artifacts stay in the project"

    with pytest.raises(RuntimeError, match="set ingest.anchor_column"):
        pairforge.mine_hard_negatives(datasets.Dataset.from_list(PAIRS), "query", "answer", project=tmp_path)
