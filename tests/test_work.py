"""Each result cache's folder is named by the settings that change a result: these pins keep that name stable, so
caches written by an earlier pairforge still hit after its code moves. A pin may change only on purpose (a new
setting, a reworded prompt), never as a side effect of a refactor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import embed, params, work
from pipeline.contrast import generate
from pipeline.filtering import edits, judges


@pytest.fixture
def model(tmp_path) -> str:
    """A local "model" whose fingerprint (its files' names and bytes) is the same on every machine."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights")
    return str(folder)


def settings(folder: Path) -> dict:
    return json.loads((folder / "settings.json").read_text())


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({}, "5fc65e4efd4ac65d"),
        ({"max_length": 128, "precision": "int8", "runtime": "onnx"}, "ca25e694a0eac7fe"),
    ],
)
def test_embedding_cache_key(model, tmp_path, overrides, key):
    config = params.EmbedParams(model=model, cache=str(tmp_path / "cache"), **overrides)
    folder = work.open_cache(embed.embedding(config)).folder
    assert folder == tmp_path / "cache" / key
    assert sorted(settings(folder)) == ["max_length", "model", "precision", "runtime"]


# Per judge backend: the folder of each filter cache (cross-encoder, LLM relevance, LLM same meaning, fluency).
FILTER_KEYS = {
    "transformers": {
        "cross_encoder": "4ec4894ee94304b3",
        "llm_relevance": "8ae2daba7a4837b3",
        "llm_same_meaning": "8279de64db2d5b88",
        "fluency": "956895bd3e144afe",
    },
    "openai": {
        "cross_encoder": "4ec4894ee94304b3",
        "llm_relevance": "b12d97d09cbdffe2",
        "llm_same_meaning": "9e2ee0a679b6c892",
        "fluency": "956895bd3e144afe",
    },
}


@pytest.mark.parametrize("backend", sorted(FILTER_KEYS))
def test_filter_cache_keys(model, tmp_path, backend):
    llm = {"llm_model": model} if backend == "transformers" else {"llm_model": "gpt-x", "llm_base_url": URL}
    config = params.FilterParams(
        cross_encoder="org/reranker", ce_max_length=256, llm_backend=backend, edit_lm=model,
        cache=str(tmp_path / "cache"), **llm,
    )  # fmt: skip
    calls = [judges.cross_encoder_call(config), edits.fluency_call(config)]
    calls += [judges.llm_answer_call(config, question) for question in ("relevance", "same_meaning")]
    for call in calls:
        work.open_cache(call)
    found = {p.parent.parent.name: p.parent.name for p in (tmp_path / "cache").glob("*/*/settings.json")}
    assert found == FILTER_KEYS[backend]
    assert sorted(settings(tmp_path / "cache/llm_relevance" / found["llm_relevance"])) == [
        "backend", "base_url", "model", "task",
    ]  # fmt: skip


URL = "http://127.0.0.1:9/v1"


@pytest.mark.parametrize(
    ("backend", "overrides", "key"),
    [
        ("transformers", {}, "aff8ca99532e548f"),
        ("transformers", {"llm_controls": ["negate"], "llm_retries": 2, "llm_max_new_tokens": 48}, "bcb07985b2037a53"),
        ("openai", {}, "17be51572efc28c6"),
        ("openai", {"llm_controls": ["negate"], "llm_retries": 2, "llm_max_new_tokens": 48}, "3575233da9da3825"),
    ],
)
def test_llm_edit_cache_key(model, tmp_path, backend, overrides, key):
    llm = {"llm_model": model} if backend == "transformers" else {"llm_model": "gpt-x", "llm_base_url": URL}
    config = params.GenerateParams(cache=str(tmp_path / "cache"), llm_backend=backend, **llm, **overrides)
    folder = work.open_cache(generate.llm_edit_call(config)).folder
    assert folder == tmp_path / "cache" / key
    assert sorted(settings(folder)) == ["backend", "base_url", "max_new_tokens", "model", "prompts", "retries"]
