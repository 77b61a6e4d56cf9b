"""The export's dataset card and manifest: the version, every config's files and sizes, and the params behind them."""

from __future__ import annotations

import json

import yaml
from datasets import load_dataset

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
