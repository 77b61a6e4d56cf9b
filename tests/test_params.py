"""Typed params: unknown keys, wrong types and out-of-range values name params.yaml and the key."""

from __future__ import annotations

import dataclasses
import shutil
import typing

import numpy as np
import pytest
import yaml

from pairforge.pipeline import artifacts, index, params
from pairforge.pipeline.schema import InputError
from tests.conftest import REPO, run_stage, set_params


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
        ("index", {"target_recall": 1.5}, r"field 'index\.target_recall': must be in \[0, 1\], got 1\.5"),
        ("export", {"dev_fraction": -0.1}, r"field 'export\.dev_fraction': must be in \[0, 1\], got -0\.1"),
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


def _numeric_keys(kind):
    for section, cls in params.SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            if kind in typing.get_args(hints[field.name]) or hints[field.name] is kind:
                yield section, field.name


@pytest.mark.parametrize(("section", "key"), list(_numeric_keys(int)))
@pytest.mark.parametrize("value", [2**31, 2**70, -1])
def test_every_int_param_is_bounded(section, key, value):
    # index.seed 2**31 passed and then crashed in faiss; export.rows_per_part 2**70 in Arrow; export.seed -1 in numpy
    with pytest.raises(InputError, match=rf"field '{section}\.{key}': must be in \[0, {2**31 - 1}\]"):
        params.parse(section, {key: value})


@pytest.mark.parametrize(("section", "key"), list(_numeric_keys(float)))
@pytest.mark.parametrize("value", [1e7, -1e7, 1e300, 10**7])
def test_every_float_param_is_bounded(section, key, value):
    with pytest.raises(InputError, match=rf"field '{section}\.{key}': must be"):
        params.parse(section, {key: value})


def test_the_largest_seed_accepted_runs_where_seeds_are_used():
    vectors = np.random.default_rng(0).standard_normal((160, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    kmeans = index.topics(vectors, params.parse("index", {"seed": 2**31 - 1, "topics": 4}))
    assert kmeans.centroids.shape == (4, 8)


@pytest.mark.parametrize("section", ["generate", "filter"])
def test_credentials_in_an_endpoint_url_are_refused_without_repeating_them(section):
    with pytest.raises(InputError, match=rf"field '{section}\.llm_base_url': holds credentials") as refused:
        params.parse(section, {"llm_backend": "openai", "llm_base_url": "https://user:sk-SECRET42@llm.example/v1"})
    assert "SECRET42" not in str(refused.value) and "user" not in str(refused.value)


@pytest.mark.parametrize("section", ["generate", "filter"])
def test_plain_http_reaches_only_this_machine_unless_allowed(section):
    remote = {"llm_backend": "openai", "llm_base_url": "http://llm.example:8000/v1"}
    with pytest.raises(InputError, match=rf"field '{section}\.llm_base_url': plain http to llm.example"):
        params.parse(section, remote)
    assert params.parse(section, {**remote, "llm_allow_http": True}).llm_allow_http
    for local in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1"):
        assert params.parse(section, {"llm_backend": "openai", "llm_base_url": local}).llm_base_url == local
    with pytest.raises(InputError, match="must be an http:// or https:// URL"):
        params.parse(section, {"llm_backend": "openai", "llm_base_url": "ftp://llm.example/v1"})


@pytest.mark.parametrize(
    ("section", "values", "field", "output"),
    [
        ("index", {"seed": 2**31}, "index.seed", "index"),
        ("generate", {"rules": ["negation_insert", "make_it_funny"]}, "generate.rules", "generated"),
        ("filter", {"llm_max_failure_share": 1.5}, "filter.llm_max_failure_share", "filtered"),
    ],
)
def test_a_bad_param_stops_its_stage_with_status_1_naming_the_key(pipeline_run, tmp_path, section, values, field,
                                                                  output):  # fmt: skip
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    before = artifacts.fingerprint(workdir / "data" / output)
    set_params(workdir, **{section: values})
    result = run_stage(workdir, section, check=False)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith(f"pairforge {section}: params.yaml, field '{field}': ")
    assert artifacts.fingerprint(workdir / "data" / output) == before
