"""Declared model calls (`pipeline.work`). Each result cache's folder is named by the settings that change a result:
the pins below keep that name stable, so caches written by an earlier pairforge still hit after its code moves (a
pin may change only on purpose: a new setting, a reworded prompt). And `compute` through a real Ray pool."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pairforge.pipeline import embed, params, work
from pairforge.pipeline.contrast import generate
from pairforge.pipeline.filtering import edits, judges
from pairforge.pipeline.runtime import Resources
from pairforge.pipeline.schema import EndpointError


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
        ({"precision": "fp32"}, "5fc65e4efd4ac65d"),  # what fp32 caches were keyed by before `auto`
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
        "llm_relevance": "a90e720d9e7654e4",
        "llm_same_meaning": "35681fba5290e6fe",
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
    assert sorted(settings(tmp_path / "cache/llm_relevance" / found["llm_relevance"])) == sorted(
        ["backend", "base_url", "model", "task", *(["p_yes"] if backend == "openai" else [])]
    )


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


def test_compute_sends_only_the_inputs_and_computes_each_missing_key_once(tmp_path):
    """Through a real Ray pool: rows come back in input order, a repeated text is computed once, and a second call
    finds everything in the cache."""

    class Length:  # an actor body that refuses columns it was not declared to read
        def __call__(self, batch: pa.Table) -> pa.Table:
            assert set(batch.column_names) == {"text", "key"}, batch.column_names
            return batch.append_column("length", pa.array([len(t) for t in batch["text"].to_pylist()], pa.int64()))

    call = work.Work(
        Length, {}, Resources(actors=1), rows_per_task=2, columns=("length",), inputs=("text",),
        cache=work.Cache(tmp_path, {"kind": "length"}, checkpoint_rows=2),
    )  # fmt: skip
    table = pa.table({"id": ["a", "b", "c", "d"], "text": ["xx", "y", "xx", "zzz"]})
    out, computed = work.compute(call, table)
    assert computed == 3 and out.column_names == ["id", "text", "length"]
    assert out["length"].to_pylist() == [2, 1, 2, 3] and out["id"].to_pylist() == ["a", "b", "c", "d"]
    assert len(list(work.open_cache(call).folder.glob("shard-*"))) == 2, "a checkpoint per task of 2 rows"
    again, computed = work.compute(call, table.slice(1))
    assert computed == 0 and again.equals(out.slice(1))


class FailsWhereTold:
    """A worker whose endpoint fails (after its retries) on the rows whose text says so."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        errors = ["http_503" if text.startswith("fail") else None for text in batch["text"].to_pylist()]
        return batch.append_column("error", pa.array(errors, pa.string()))


def test_an_endpoint_is_checked_once_and_held_to_its_failure_budget(tmp_path):
    """Its preflight runs before its first row and never again in the stage; more failed rows than the budget
    allows (and at least five) fail the call, keeping what it finished; below the budget they come back, uncached."""
    checks = []

    def call(name: str, share: float) -> work.Work:
        failed = lambda results: pc.is_valid(results["error"])  # noqa: E731
        endpoint = work.Endpoint(f"http://{tmp_path.name}/{name}", lambda: checks.append(name), failed, share)
        return work.Work(
            FailsWhereTold, {}, Resources(actors=1), rows_per_task=4, columns=("error",), inputs=("text",),
            cache=work.Cache(tmp_path, {"kind": "fails"}, checkpoint_rows=4),
            cacheable=lambda results: pc.is_null(results["error"]), endpoint=endpoint,
        )  # fmt: skip

    table = pa.table({"text": [f"ok {i}" for i in range(20)] + [f"fail {i}" for i in range(6)]})
    with pytest.raises(EndpointError, match=r"failed on 6 of 26 items .* more than llm_max_failure_share \(0.1\)"):
        work.compute(call("strict", 0.1), table)
    assert checks == ["strict"]
    # The 20 answers came before the failures and were kept; a run with a looser budget asks for the 6 alone.
    out, computed = work.compute(call("loose", 1.0), table)
    assert computed == 6 and checks == ["strict", "loose"]
    assert out["error"].null_count == 20
    _, computed = work.compute(call("loose", 1.0), table.slice(0, 20))
    assert computed == 0 and checks == ["strict", "loose"]
    # Four failures of four rows is within the budget: a few failures are not an outage.
    fresh = pa.table({"text": [f"fail again {i}" for i in range(4)]})
    out, computed = work.compute(call("few", 0.1), fresh)
    assert computed == 4 and out["error"].null_count == 0
