"""Export: formats that datasets, sentence-transformers and polars read directly; card and version."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from datasets import load_dataset

from pipeline import artifacts, models
from tests.conftest import run_stage

FORMATS = ["triplet", "n-tuple", "labeled-pair", "contrast-triplet"]
TEXT_COLUMNS = {
    "triplet": ["anchor", "positive", "negative"],
    "contrast-triplet": ["anchor", "positive", "negative"],
    "n-tuple": ["anchor", "positive", "negative_1", "negative_2", "negative_3"],
    "labeled-pair": ["anchor", "document", "label"],
}


def load(run, fmt):
    return load_dataset("parquet", data_files=str(run / f"data/export/{fmt}/part-*.parquet"), split="train")


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_loads_with_datasets_in_sentence_transformers_columns(pipeline_run, fmt):
    dataset = load(pipeline_run, fmt)
    manifest = artifacts.manifest(pipeline_run / f"data/export/{fmt}")
    assert len(dataset) == manifest["rows"] > 0
    expected = TEXT_COLUMNS[fmt]
    assert dataset.column_names[: len(expected)] == expected
    if fmt == "labeled-pair":
        assert set(dataset["label"]) == {0, 1}


def test_triplets_hold_the_mined_negatives_in_rank_order(pipeline_run):
    triplets = pl.read_parquet(pipeline_run / "data/export/triplet/part-*.parquet")
    triplets = triplets.filter(pl.col("negative_kind") == "mined")  # counterfactuals follow: tests/test_generate.py
    negatives = pl.from_arrow(artifacts.read(pipeline_run / "data/mined/negatives"))
    positives = pl.from_arrow(artifacts.read(pipeline_run / "data/ingested/positives"))
    per_query = positives.group_by("query_id").len().rename({"len": "positives"})
    expected = negatives.join(per_query, on="query_id").select(pl.col("positives").sum()).item()
    assert triplets.height == expected, "each negative is paired with each positive of its query"
    first = triplets.filter(pl.col("query_id") == triplets["query_id"][0])
    assert first["neg_score"].to_list() == sorted(first["neg_score"].to_list(), reverse=True)[: first.height]
    assert (triplets["neg_score"] < triplets["pos_score"]).all(), "relative_margin keeps negatives below positives"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "loss"),
    [("triplet", "mnrl"), ("n-tuple", "mnrl"), ("labeled-pair", "contrastive"), ("contrast-triplet", "mnrl")],
)
def test_a_sentence_transformers_model_trains_on_each_format(pipeline_run, tmp_path, fmt, loss):
    import torch
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    dataset = load(pipeline_run, fmt).select_columns(TEXT_COLUMNS[fmt]).select(range(16))
    model = SentenceTransformer(str(models.resolve("packaged:all-MiniLM-L6-v2")), device="cpu")
    model.max_seq_length = 64
    before = [p.detach().clone() for p in model.parameters()][-4]
    objective = losses.MultipleNegativesRankingLoss(model) if loss == "mnrl" else losses.ContrastiveLoss(model)
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
    scan = pl.scan_parquet(pipeline_run / "data/export/triplet/part-*.parquet")
    by_topic = (
        scan.group_by("topic").agg(pl.len().alias("rows"), pl.col("neg_score").mean().alias("hardness")).collect()
    )
    assert by_topic["rows"].sum() == scan.select(pl.len()).collect().item()
    hard = scan.filter(pl.col("neg_score") > 0.5).select("query_id", "negative_id").collect()
    assert hard.height == scan.filter(pl.col("neg_score") > 0.5).select(pl.len()).collect().item()


def test_card_and_manifest_describe_the_version_and_sizes(pipeline_run):
    export = pipeline_run / "data/export"
    manifest = json.loads((export / "_manifest.json").read_text())
    card = (export / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in front["configs"]} == set(FORMATS)
    for info in front["dataset_info"]:
        assert info["splits"][0]["num_examples"] == manifest["rows"][info["config_name"]]
    assert manifest["version"] in card
    assert set(manifest["inputs"]) == {"ingested", "index", "mined", "filtered"}
    assert manifest["params"]["generate"]["rules"]  # the edits' provenance travels with the version
    assert manifest["params"]["mine"]["num_negatives"] == 3


def test_export_is_deterministic(pipeline_run):
    before = json.loads((pipeline_run / "data/export/_manifest.json").read_text())["version"]
    run_stage(pipeline_run, "export")
    assert json.loads((pipeline_run / "data/export/_manifest.json").read_text())["version"] == before
