"""Export: formats that datasets, sentence-transformers and polars read directly; the dev split, batch order and a
deterministic version."""

from __future__ import annotations

import collections
import json

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import load_dataset

from pairforge.pipeline import artifacts, batches, formats, models, training
from tests.conftest import contrast_rows_by_edit, export_table, run_stage

FORMATS = ["triplet", "n-tuple", "n-tuple-scores", "labeled-pair", "labeled-list", "contrast-triplet", "mixed"]
TEXT_COLUMNS = {
    "triplet": ["anchor", "positive", "negative"],
    "contrast-triplet": ["anchor", "positive", "negative"],
    "mixed": ["anchor", "positive", "negative"],
    "n-tuple": ["anchor", "positive", "negative_1", "negative_2", "negative_3"],
    "n-tuple-scores": ["anchor", "positive", "negative_1", "negative_2", "negative_3", "score"],
    "labeled-pair": ["anchor", "document", "label"],
    "labeled-list": ["anchor", "documents", "labels"],
}


def load(run, fmt, split="train"):
    files = f"data/export/{fmt}/part-*.parquet" if split == "train" else f"data/export/{fmt}/{split}/part-*.parquet"
    return load_dataset("parquet", data_files=str(run / files), split="train")


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_loads_with_datasets_in_sentence_transformers_columns(pipeline_run, fmt):
    dataset = load(pipeline_run, fmt)
    manifest = artifacts.manifest(pipeline_run / f"data/export/{fmt}")
    assert len(dataset) == manifest["rows"] > 0
    expected = TEXT_COLUMNS[fmt]
    assert dataset.column_names[: len(expected)] == expected
    if fmt == "labeled-pair":
        assert set(dataset["label"]) == {0, 1}
    if fmt == "n-tuple-scores":
        for row in dataset:  # no cross-encoder here: the embedding model's scores, the positive's first
            assert row["score"] == pytest.approx([row["pos_score"], *row["neg_scores"]]) and len(row["score"]) == 4
    if fmt == "labeled-list":
        for row in dataset:
            assert row["labels"] == [1] + [0] * (len(row["documents"]) - 1) and len(row["documents"]) >= 2


def test_triplets_hold_the_filtered_negatives_in_rank_order(pipeline_run):
    triplets = pl.from_arrow(export_table(pipeline_run, "triplet")).filter(pl.col("negative_kind") == "mined")
    negatives = pl.from_arrow(artifacts.read(pipeline_run / "data/filtered/negatives"))
    positives = pl.from_arrow(artifacts.read(pipeline_run / "data/ingested/positives"))
    per_query = positives.group_by("query_id").len().rename({"len": "positives"})
    expected = negatives.join(per_query, on="query_id").select(pl.col("positives").sum()).item()
    assert triplets.height == expected, "each negative is paired with each positive of its query"
    mined = negatives.group_by("query_id", maintain_order=True).agg("doc_id")
    exported = triplets.sort("query_id", pl.col("neg_score"), descending=[False, True])
    for query_id, docs in mined.iter_rows():
        rows = exported.filter(pl.col("query_id") == query_id).unique("negative_id", maintain_order=True)
        assert rows["negative_id"].to_list() == docs, "by score, the negatives are the filter's, in rank order"
    vectors = artifacts.read(pipeline_run / "data/embeddings/corpus")
    vector = dict(zip(vectors["id"].to_pylist(), vectors["vector"].to_numpy(zero_copy_only=False)))
    if artifacts.manifest(pipeline_run / "data/filtered/calibration")["false_negatives"].get("learned"):
        judged = artifacts.read(pipeline_run / "data/filtered/judged").to_pylist()
        chances = {(r["query_id"], r["doc_id"]): dict(r["scores"])["chance"] for r in judged if r["decision"] == "kept"}
        assert max(chances[(q, d)] for q, d in triplets.select("query_id", "negative_id").iter_rows()) < 0.1
        return  # the learned rule decided, in place of closeness to the pair
    closeness = [
        (row["neg_score"] + float(vector[row["positive_id"]] @ vector[row["negative_id"]])) / (1 + row["pos_score"])
        for row in triplets.iter_rows(named=True)
    ]
    assert max(closeness) < 0.7, "no negative is as close to its query and positive as filter.pair_closeness"


def test_every_format_has_the_query_as_its_anchor(pipeline_run):
    """One role per column (asymmetric models and `prompts={"anchor": "query: "}` rely on it): wherever a row names
    its query, the anchor is that query's text; the edited queries read the other way, in contrast-triplet only."""
    queries = artifacts.read(pipeline_run / "data/ingested/queries")
    text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
    for fmt in ("triplet", "n-tuple", "n-tuple-scores", "labeled-pair", "labeled-list", "mixed"):
        table = export_table(pipeline_run, fmt)
        assert table.num_rows and table["anchor"].to_pylist() == [text[q] for q in table["query_id"].to_pylist()], fmt
    contrast = export_table(pipeline_run, "contrast-triplet").to_pylist()
    assert contrast and all(row["positive"] == text[row["query_id"]] for row in contrast)
    assert {row["direction"] for row in contrast} == {"document->query"}


def test_dev_split_shares_no_query_and_no_positive_with_train(pipeline_run):
    for fmt in ("triplet", "n-tuple", "labeled-list", "contrast-triplet"):
        train = artifacts.read(pipeline_run / f"data/export/{fmt}")
        dev = artifacts.read(pipeline_run / f"data/export/{fmt}/dev")
        assert dev.num_rows > 0 and train.num_rows > 0
        queries = [set(t["query_id"].drop_null().to_pylist()) for t in (train, dev)]
        assert not queries[0] & queries[1], fmt
    positives = artifacts.read(pipeline_run / "data/ingested/positives")
    dev_queries = set(artifacts.read(pipeline_run / "data/export/triplet/dev")["query_id"].to_pylist())
    in_dev = {d for q, d in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()) if q in dev_queries}
    train_positives = set(artifacts.read(pipeline_run / "data/export/triplet")["positive_id"].to_pylist())
    assert not in_dev & train_positives


@pytest.mark.parametrize("fmt", ["triplet", "n-tuple"])
def test_rows_come_batch_by_batch_as_a_sequential_trainer_reads_them(pipeline_run, fmt):
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from torch.utils.data import SequentialSampler

    table = artifacts.read(pipeline_run / f"data/export/{fmt}")
    batch_id = table["batch_id"].to_pylist()
    assert batch_id == sorted(batch_id) and batch_id[0] == 0
    manifest = json.loads((pipeline_run / "data/export/_manifest.json").read_text())
    plan = manifest["batches"][fmt]["train"]
    assert plan["batches"] == batch_id[-1] + 1 and plan["same_positive"] == 0
    positives = artifacts.read(pipeline_run / "data/ingested/positives")
    known = {}
    for q, d in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()):
        known.setdefault(q, set()).add(d)
    recount = batches.conflicts(formats.batch_rows(fmt, table, known), np.array(batch_id))
    assert plan == {"batches": batch_id[-1] + 1, **recount}
    # Read in order with the export's batch size, a trainer gets each full batch exactly.
    size = manifest["params"]["export"]["batch_size"]
    full = [b for b in range(batch_id[-1] + 1) if batch_id.count(b) == size]
    assert full == list(range(len(full))), "full batches come first (how many depends on the data's conflicts)"
    sampler = DefaultBatchSampler(SequentialSampler(range(table.num_rows)), batch_size=size, drop_last=False)
    assert [{batch_id[i] for i in indices} for indices in sampler][: len(full)] == [{b} for b in full]
    # The README's sampler for sentence-transformers' trainer gives every batch, partial ones included.
    dataset = load(pipeline_run, fmt).select_columns(TEXT_COLUMNS[fmt])
    expected = [[i for i, b in enumerate(batch_id) if b == k] for k in range(batch_id[-1] + 1)]
    in_order = training.export_batches(batch_id, shuffle_batches=False)(dataset, size, False, seed=3)
    assert [list(indices) for indices in in_order] == expected
    shuffled = training.export_batches(batch_id)(dataset, size, False, seed=3)
    assert sorted(sorted(indices) for indices in shuffled) == expected, "batch order shuffles, batches stay whole"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "loss"),
    [
        ("triplet", "mnrl"),
        ("n-tuple", "mnrl"),
        ("n-tuple-scores", "distill"),
        ("labeled-pair", "contrastive"),
        ("contrast-triplet", "mnrl"),
        ("mixed", "mnrl"),
        ("triplet+contrast-triplet", "mnrl"),  # the README's recipe: edits of queries as a dataset of their own
    ],
)
def test_a_sentence_transformers_model_trains_on_each_format(pipeline_run, tmp_path, fmt, loss):
    import torch
    from datasets import DatasetDict
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    names = fmt.split("+")
    parts = {name: load(pipeline_run, name) for name in names}
    if len(names) > 1:  # edits of queries read document -> query: a dataset of their own, each batch one way
        parts["contrast-triplet"] = parts["contrast-triplet"].filter(lambda row: row["direction"] == "document->query")
    parts = {name: part.select_columns(TEXT_COLUMNS[name]) for name, part in parts.items()}
    parts = {name: part.select(range(min(16, part.num_rows))) for name, part in parts.items()}
    assert all(part.num_rows for part in parts.values())
    dataset = DatasetDict(parts) if len(names) > 1 else parts[fmt]
    model = SentenceTransformer(str(models.resolve("packaged:all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 64
    before = [p.detach().clone() for p in model.parameters()][-4]
    objective = {
        "mnrl": losses.MultipleNegativesRankingLoss,
        "contrastive": losses.ContrastiveLoss,
        "distill": losses.DistillKLDivLoss,  # the teacher's scores in `score`
    }[loss](model)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-4,
        seed=1,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=objective)
    result = trainer.train()
    assert result.global_step == 3
    assert torch.isfinite(torch.tensor(result.training_loss))
    assert not torch.equal(before, [p.detach() for p in model.parameters()][-4]), "the weights moved"


def test_polars_queries_the_export_lazily(pipeline_run):
    parts = sorted((pipeline_run / "data/export/triplet").glob("part-*.parquet"))
    scan = pl.scan_parquet(pipeline_run / "data/export/triplet/part-*.parquet")
    by_topic = (
        scan.group_by("topic").agg(pl.len().alias("rows"), pl.col("neg_score").mean().alias("hardness")).collect()
    )
    hard = scan.filter(pl.col("neg_score") > 0.5).select("query_id", "negative_id").collect()
    # What polars found, against the same files read whole by pyarrow and counted in Python.
    rows = pa.concat_tables([pq.read_table(part) for part in parts]).to_pylist()
    topics = collections.defaultdict(list)
    for row in rows:
        topics[row["topic"]].append(row["neg_score"])
    assert {t: n for t, n in by_topic.select("topic", "rows").iter_rows()} == {t: len(v) for t, v in topics.items()}
    for topic, hardness in by_topic.select("topic", "hardness").iter_rows():
        assert hardness == pytest.approx(float(np.mean(topics[topic])), rel=1e-6)
    expected = sorted((r["query_id"], r["negative_id"]) for r in rows if r["neg_score"] > 0.5)
    assert 0 < len(expected) < len(rows) and sorted(hard.iter_rows()) == expected


def test_export_is_deterministic(pipeline_run):
    before = json.loads((pipeline_run / "data/export/_manifest.json").read_text())["version"]
    run_stage(pipeline_run, "export")
    assert json.loads((pipeline_run / "data/export/_manifest.json").read_text())["version"] == before


def test_a_counterfactual_scores_anchor_against_edit_as_exported(pipeline_run):
    """The counterfactual scores `dvc plots` draws are each contrast row's anchor · negative, on the axis of the
    positives' (query · positive) and mined negatives' (query · negative) scores, by the embed stage's encoder."""
    from pairforge.pipeline.models.encoder import Encoder

    exported = contrast_rows_by_edit(pipeline_run)
    edits = artifacts.read(pipeline_run / "data/filtered/edits").to_pylist()
    for edit in edits:  # every query here has positives: each kept counterfactual is exported
        assert (len(edit["context_scores"]) > 0) == (edit["decision"] == "kept" and not edit["preserves_meaning"])
    encoder = Encoder(str(models.resolve("packaged:all-MiniLM-L6-v2")), device="cpu")
    scores = {e["pair_id"]: sorted(e["context_scores"]) for e in edits}
    sample = sorted(exported)[:: max(1, len(exported) // 12)]  # a dozen edits, each with all its rows
    assert sample
    for pair_id in sample:
        vectors = encoder.encode([r["anchor"] for r in exported[pair_id]] + [exported[pair_id][0]["negative"]])[0]
        assert np.allclose(scores[pair_id], sorted(vectors[:-1] @ vectors[-1]), atol=1e-4), pair_id
