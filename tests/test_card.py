"""The export's dataset card and manifest: the version, every config's files and sizes, the params behind them, and
a card Hugging Face `datasets` loads without a warning."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq
import pytest
import yaml
from datasets import load_dataset

from pairforge.pipeline import artifacts, params
from pairforge.pipeline.schema import InputError
from tests.conftest import REPO, export_table
from tests.test_export import FORMATS


def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def section(card: str, title: str) -> str:
    return card.split(f"## {title}\n")[1].split("\n## ")[0]


def test_card_and_manifest_describe_the_version_and_sizes(pipeline_run, tmp_path, capfd):
    folder = pipeline_run / "data/export"
    manifest = json.loads((folder / "_manifest.json").read_text())
    card = (folder / "README.md").read_text()
    front = front_matter(card)
    assert {c["config_name"] for c in front["configs"]} == set(FORMATS)
    infos = {info["config_name"]: info for info in front["dataset_info"]}
    capfd.readouterr()
    for config, info in infos.items():  # each config loads by name, as the card declares it, and quietly
        loaded = load_dataset(str(folder), config, cache_dir=str(tmp_path))
        said = {s["name"]: s for s in info["splits"]}
        assert {name: s["num_examples"] for name, s in said.items()} == manifest["rows"][config]
        assert {name: len(split) for name, split in loaded.items()} == manifest["rows"][config]
        measured = loaded["train"].info  # what `datasets` counted as it read the files
        assert info["download_size"] == measured.download_size
        for name, split in said.items():
            assert split["num_bytes"] == pytest.approx(measured.splits[name].num_bytes, rel=0.01)
        assert info["dataset_size"] == sum(s["num_bytes"] for s in said.values())
    assert "dataset_info" not in capfd.readouterr().err, "datasets ignored part of the card"
    assert manifest["version"] in card
    assert set(manifest["inputs"]) == {"ingested", "pairs", "index", "mined", "filtered"}
    assert manifest["params"]["generate"]["rules"]  # the edits' provenance travels with the version
    assert manifest["params"]["mine"]["num_negatives"] == 3


def test_the_card_declares_license_language_tasks_and_size(pipeline_run):
    front = front_matter((pipeline_run / "data/export/README.md").read_text())
    export = yaml.safe_load((REPO / "params.yaml").read_text())["export"]
    assert front["license"] == export["license"] and front["language"] == [export["language"]]
    assert {"sentence-similarity", "text-retrieval", "text-ranking"} <= set(front["task_categories"])
    assert {"sentence-transformers", "hard-negatives", "counterfactuals"} <= set(front["tags"])
    largest = max(export_table(pipeline_run, fmt).num_rows for fmt in FORMATS)
    low, high = {"n<1K": (0, 1000), "1K<n<10K": (1000, 10_000)}[front["size_categories"][0]]
    assert low <= largest < high


def test_the_card_names_source_models_thresholds_and_every_column(pipeline_run):
    card = (pipeline_run / "data/export/README.md").read_text()
    used = json.loads((pipeline_run / "data/export/_manifest.json").read_text())["params"]
    assert f"Built from `{used['ingest']['source']}` (format `{used['ingest']['format']}`" in section(card, "Source")
    models = section(card, "Models")
    assert f"Encoder: `{used['embed']['model']}`" in models
    searched = json.loads((pipeline_run / "data/export/_manifest.json").read_text())["index"]
    assert searched["exact"] and f"Index: `{searched['factory']}`, exact search" in models
    for side in ("query", "document"):  # the prompts the params name, or the model's own
        given = used["embed"][f"{side}_prompt"]
        assert (json.dumps(given) if given else f"the model's own {side} prompt") in models
    thresholds = section(card, "Thresholds")
    for key in ("duplicate_jaccard", "duplicate_cosine", "pair_closeness", "edit_max_tokens", "edit_judge"):
        assert f"| `filter.{key}` | {json.dumps(used['filter'][key])} |" in thresholds
    assert "`filter.cache`" not in thresholds and "`mine.actors`" not in thresholds, "how it ran, not what decided"
    glossary = section(card, "Columns")
    for fmt in FORMATS:  # every column of every Parquet file, read here without the export's code
        for column in pq.read_schema(next((pipeline_run / "data/export" / fmt).glob("part-*.parquet"))).names:
            name = re.sub(r"_\d+$", "_<i>", column) if column.startswith("negative_") else column
            lines = [line for line in glossary.splitlines() if line.startswith(f"- `{name}` (") and fmt in line]
            assert len(lines) == 1 and lines[0].split("): ", 1)[1], (fmt, column)


def test_the_card_shows_three_rows_of_each_format(pipeline_run):
    examples = section((pipeline_run / "data/export/README.md").read_text(), "Examples")
    for fmt in FORMATS:
        shown = examples.split(f"**{fmt}**\n")[1].split("\n\n**")[0]
        rows = artifacts.read(pipeline_run / "data/export" / fmt).slice(0, 3).to_pylist()
        table = [line for line in shown.splitlines() if line.startswith("| ") and "---" not in line][1:]
        assert len(table) == 3
        for line, row in zip(table, rows):
            cells = dict(zip(row, line.strip("| ").split(" | ")))  # the text columns come first
            assert cells["anchor"].startswith(" ".join(row["anchor"].split()[:4])), (fmt, line)
            for column, text in cells.items():
                if isinstance(row[column], str) and len(row[column]) > 120:
                    assert len(text) <= 120 and text.endswith("…"), "long texts are cut"


def test_the_card_says_how_many_false_negatives_were_measured(pipeline_run):
    """The filter's hidden-positive measurement reaches the card and the metrics, or the card says why not."""
    from pairforge.pipeline.filtering import calibration

    positives = artifacts.read(pipeline_run / "data/ingested/positives")
    expected = len(calibration.sample(positives).hidden)
    report = json.loads((pipeline_run / "metrics/export.json").read_text())["false_negatives"]
    manifest = json.loads((pipeline_run / "data/export/_manifest.json").read_text())
    assert report == manifest["false_negatives"] and report["queries"] == expected > 0
    card = (pipeline_run / "data/export/README.md").read_text()
    found = section(card, "False negatives, measured")
    if report["rate"] is None:
        assert expected < calibration.MIN_QUERIES and f"{expected} queries with two or more" in found
    else:
        assert f"{report['rate']:.1%}" in found and f"{report['negatives']} negatives kept" in found


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"license": "CC BY 4.0"}, r"field 'export\.license': expected a license id"),
        ({"language": "English"}, r"field 'export\.language': expected ISO 639 codes"),
        ({"language": ["en", "de_DE"]}, r"field 'export\.language': expected ISO 639 codes"),
    ],
)
def test_license_and_language_must_be_what_the_hub_reads(values, message):
    with pytest.raises(InputError, match=message):
        params.parse("export", values)
    assert params.parse("export", {"license": "cc-by-nc-2.0", "language": ["en", "pt-BR"]}).language == ["en", "pt-BR"]
