"""Typed params: unknown keys, wrong types and out-of-range values name params.yaml and the key."""

from __future__ import annotations

import pytest
import yaml

from pipeline import params
from pipeline.schema import InputError
from tests.conftest import REPO


def test_the_repo_params_parse_for_every_stage():
    document = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(document) == set(params.SECTIONS)
    for section in params.SECTIONS:
        assert params.load(section, REPO / "params.yaml") is not None


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("mine", {"num_negative": 3}, r"field 'mine\.num_negative': unknown key"),
        ("mine", {"num_negatives": "3"}, r"field 'mine\.num_negatives': expected"),
        ("mine", {"num_negatives": 0}, r"field 'mine\.num_negatives': must be >= 1"),
        ("mine", {"range_min": 5, "range_max": 5}, r"field 'mine\.range_max': must be greater"),
        ("mine", {"sampling": "best"}, r"field 'mine\.sampling': expected"),
        ("mine", {"relative_margin": 1.5}, r"field 'mine\.relative_margin': must be in"),
        ("mine", {"absolute_margin": True}, r"field 'mine\.absolute_margin': expected"),
        ("embed", {"batch_size": 0}, r"field 'embed\.batch_size'"),
        ("embed", {"precision": "int8"}, r"field 'embed\.precision': runtime torch takes"),
        ("embed", {"runtime": "onnx", "precision": "bf16"}, r"field 'embed\.precision': runtime onnx takes"),
        ("embed", {"runtime": "onnx", "gpus_per_actor": 1}, r"field 'embed\.runtime': onnx runs on CPU"),
        ("export", {"formats": ["parquet-soup"]}, r"field 'export\.formats': unknown format"),
        ("ingest", {"format": "xml"}, r"field 'ingest\.format'"),
        ("filter", {"likely_positive_above": 1.5}, r"field 'filter\.likely_positive_above': must be in \[0, 1\]"),
    ],
)
def test_bad_params_name_the_key(section, values, message):
    with pytest.raises(InputError, match=message):
        params.parse(section, values)


def test_ints_are_accepted_where_floats_are_expected():
    assert params.parse("mine", {"relative_margin": 0}).relative_margin == 0.0


def test_invalid_yaml_names_the_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("mine: [unclosed\n")
    with pytest.raises(InputError, match="params.yaml: not valid YAML"):
        params.load("mine", path)
