"""Cross-encoder judge: a real cross-encoder built from the packaged MiniLM on STS-B, scored in and out of batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from scipy.stats import spearmanr
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from benchmarks.cross_encoder import read_sts
from pairforge.pipeline.models.scorer import CrossEncoderBatch, CrossEncoderScorer, positive_label_index
from tests.conftest import DATASETS, need

STSB = DATASETS / "stsbenchmark"
NLI_LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}
# The cross-encoder itself comes from conftest's session fixture `cross_encoder_dir` (benchmarks.cross_encoder.build),
# built once and shared with the filter stage's tests: the build is the slow part.


@pytest.fixture(scope="module")
def dev() -> list[tuple[float, str, str]]:
    need(STSB / "sts-dev.csv", "STS-B")
    return read_sts(STSB / "sts-dev.csv")


@pytest.fixture(scope="module")
def scorer(cross_encoder_dir) -> CrossEncoderScorer:
    # A small batch, so that the 40-odd pairs below span several length-sorted batches.
    return CrossEncoderScorer(str(cross_encoder_dir), batch_size=8, device="cpu")


@pytest.fixture(scope="module")
def pairs(dev) -> tuple[list[str], list[str]]:
    """Real dev pairs of mixed lengths, plus one far past the model's 128 tokens (cut when scored)."""
    rows = dev[::37][:40]
    queries, documents = [r[1] for r in rows], [r[2] for r in rows]
    queries.append(dev[0][1])
    documents.append(" ".join(r[2] for r in dev[:30]))
    return queries, documents


def test_scores_are_probabilities_in_input_order(scorer, pairs):
    queries, documents = pairs
    assert scorer.max_length == 128, "the build saves its training length as the tokenizer's limit"
    assert len(scorer.tokenize(queries[-1:], documents[-1:])["input_ids"][0]) == 128
    scores = scorer.score(queries, documents)
    assert scores.dtype == np.float32 and scores.shape == (len(queries),)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert scores.std() > 0.1, "a trained judge tells pairs apart"
    assert np.array_equal(scorer.score(queries, documents), scores), "same inputs, same scores"
    reversed_scores = scorer.score(queries[::-1], documents[::-1])
    assert np.abs(reversed_scores[::-1] - scores).max() < 1e-5
    one_by_one = np.array([scorer.score([q], [d])[0] for q, d in zip(queries, documents)])
    assert np.abs(one_by_one - scores).max() < 1e-5, "batching and length sorting do not change a pair's score"
    assert scorer.score([], []).shape == (0,)
    with pytest.raises(ValueError, match="line up"):
        scorer.score(queries, documents[:-1])


def test_ranks_sts_dev_pairs_like_the_gold_scores(scorer, dev):
    rows = dev[:300]
    scores = scorer.score([r[1] for r in rows], [r[2] for r in rows])
    correlation = spearmanr(scores, [r[0] for r in rows]).statistic
    assert correlation > 0.7, f"Spearman {correlation:.3f} (0.80 measured on these 300 pairs)"


def test_batch_actor_passes_keys_through_and_adds_scores(cross_encoder_dir, scorer, pairs):
    queries, documents = pairs
    table = pa.table(
        {
            "query_id": [f"q{i}" for i in range(len(queries))],
            "query": queries,
            "doc_id": [f"d{i % 7}" for i in range(len(queries))],
            "document": documents,
            "rank": pa.array(range(len(queries)), type=pa.int32()),
        }
    )
    actor = CrossEncoderBatch(str(cross_encoder_dir), max_length=0, batch_size=8, device="cpu")
    out = actor(table)
    assert out.column_names == ["query_id", "doc_id", "rank", "ce_score"], "texts dropped, keys kept in order"
    assert out.schema.field("ce_score").type == pa.float32()
    for key in ("query_id", "doc_id", "rank"):
        assert out.column(key).equals(table.column(key))
    expected = scorer.score(queries, documents)
    assert np.array_equal(out.column("ce_score").to_numpy(), expected)
    texts_only = actor(table.select(["query", "document"]))
    assert texts_only.column_names == ["ce_score"] and np.array_equal(texts_only.column(0).to_numpy(), expected)


@pytest.fixture(scope="module")
def nli_dir(cross_encoder_dir, tmp_path_factory) -> Path:
    """The built encoder with a fresh 3-way NLI head (random weights: only the label handling is under test)."""
    out = tmp_path_factory.mktemp("nli")
    config = AutoConfig.from_pretrained(
        cross_encoder_dir, num_labels=3, id2label=NLI_LABELS, label2id={v: k for k, v in NLI_LABELS.items()}
    )
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        cross_encoder_dir, config=config, ignore_mismatched_sizes=True
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(cross_encoder_dir).save_pretrained(out)
    return out


def test_several_labels_score_the_entailment_probability(nli_dir, pairs):
    queries, documents = pairs
    judge = CrossEncoderScorer(str(nli_dir), batch_size=8, device="cpu")
    assert (judge.num_labels, judge.positive_label, judge.positive_index) == (3, "entailment", 1)
    entailment = judge.score(queries, documents)
    assert entailment.dtype == np.float32 and ((entailment > 0) & (entailment < 1)).all()
    others = [
        CrossEncoderScorer(str(nli_dir), batch_size=8, device="cpu", positive_label=name).score(queries, documents)
        for name in ("contradiction", "NEUTRAL")
    ]
    assert np.abs(entailment + others[0] + others[1] - 1).max() < 1e-5, "softmax probabilities over the 3 labels"
    with pytest.raises(ValueError, match="not one of"):
        CrossEncoderScorer(str(nli_dir), device="cpu", positive_label="relevant")


def test_positive_label_rule():
    assert positive_label_index({0: "not_relevant", 1: "relevant"}) == 1
    assert positive_label_index({"0": "ENTAILMENT", "1": "NEUTRAL", "2": "CONTRADICTION"}) == 0
    assert positive_label_index({0: "LABEL_0", 1: "LABEL_1"}) == 1
    assert positive_label_index({0: "yes", 1: "no"}) == 0
    with pytest.raises(ValueError, match="positive_label"):
        positive_label_index({0: "LABEL_0", 1: "LABEL_1", 2: "LABEL_2"})
