"""The export's dataset card and manifest: the version, every config's files and sizes, and the params behind them."""

from __future__ import annotations

import json

import yaml
from datasets import load_dataset

from pipeline import artifacts
from tests.test_export import FORMATS


def test_card_and_manifest_describe_the_version_and_sizes(pipeline_run):
    folder = pipeline_run / "data/export"
    manifest = json.loads((folder / "_manifest.json").read_text())
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert {c["config_name"] for c in front["configs"]} == set(FORMATS)
    for info in front["dataset_info"]:
        splits = {s["name"]: s["num_examples"] for s in info["splits"]}
        assert splits == manifest["rows"][info["config_name"]] and set(splits) == {"train", "dev"}
    for config in front["configs"]:  # every split's files load as the card says
        for files in config["data_files"]:
            dataset = load_dataset("parquet", data_files=str(folder / files["path"]), split="train")
            assert len(dataset) == manifest["rows"][config["config_name"]][files["split"]]
    assert manifest["version"] in card
    assert set(manifest["inputs"]) == {"ingested", "index", "mined", "filtered"}
    assert manifest["params"]["generate"]["rules"]  # the edits' provenance travels with the version
    assert manifest["params"]["mine"]["num_negatives"] == 3


def test_the_card_says_how_many_false_negatives_were_measured(pipeline_run):
    """The filter's hidden-positive measurement reaches the card and the metrics, or the card says why not."""
    from pipeline.filtering import calibration

    positives = artifacts.read(pipeline_run / "data/ingested/positives")
    expected = len(calibration.sample(positives).hidden)
    report = json.loads((pipeline_run / "metrics/export.json").read_text())["false_negatives"]
    manifest = json.loads((pipeline_run / "data/export/_manifest.json").read_text())
    assert report == manifest["false_negatives"] and report["queries"] == expected > 0
    card = (pipeline_run / "data/export/README.md").read_text()
    section = card.split("## False negatives, measured")[1].split("## ")[0]
    if report["rate"] is None:
        assert expected < calibration.MIN_QUERIES and f"{expected} queries with two or more" in section
    else:
        assert f"{report['rate']:.1%}" in section and f"{report['negatives']} negatives kept" in section
