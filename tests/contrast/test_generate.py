"""Contrast generation: LLM results reconciled with attempts and ledger, seeded samples; and the generate stage for
real: rules in Ray actors, the packaged local LLM, an OpenAI-compatible server with injected faults, sentence files
and positive documents as sources."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from pairforge.pipeline import artifacts, params, schema
from pairforge.pipeline.contrast import generate, validate
from pairforge.pipeline.params import GenerateParams
from tests.conftest import (
    DATASETS,
    contrast_rows_by_edit,
    export_table,
    kill_at_first_checkpoint,
    need,
    run_stage,
    set_params,
)

KEY_ENV, KEY = "PAIRFORGE_TEST_EDIT_KEY", "sk-test-never-written-anywhere"


def test_llm_results_reconcile_with_attempts_and_ledger():
    """Applied, or rejected with the model's raw output (unparseable, or a request the server refused as such),
    or pending: the endpoint failed on it, nothing was decided, no ledger row."""
    results = pa.table(
        {
            "source_kind": ["query"] * 4,
            "source_id": ["q1", "q1", "q2", "q2"],
            "text": ["Aspirin reduces risk."] * 4,
            "control": ["negate", "paraphrase", "negate", "paraphrase"],
            "edited": ["Aspirin does not reduce risk.", None, None, None],
            "raw_output": ['{"edited": "Aspirin does not reduce risk."}', "sure! here it is", None, None],
            "reason": [None, "unparseable_output", "http_500", "http_400"],
            "attempts": pa.array([1, 2, 4, 1], pa.int32()),
        }
    )
    contrast, attempts, rejections = generate.from_llm(results, "llm:test")
    assert contrast.schema.equals(schema.CONTRAST) and attempts.schema.equals(schema.ATTEMPTS)
    assert contrast.num_rows + rejections.num_rows + generate.pending(attempts) == attempts.num_rows == 4
    assert contrast["op"].to_pylist() == ["llm_negate"]
    assert contrast["raw_output"].to_pylist() == ['{"edited": "Aspirin does not reduce risk."}']
    assert attempts["outcome"].to_pylist() == ["applied", "unparseable_output", "pending", "http_400"]
    assert rejections["key"].to_pylist() == ["query/q1/llm_paraphrase", "query/q2/llm_paraphrase"]
    assert rejections["detail"].to_pylist() == ["sure! here it is", None]  # the raw output is kept
    assert rejections["scores"].to_pylist()[1] == [("attempts", 1.0)]


def test_sample_is_seeded_and_nested():
    table = pa.table({"source_id": [str(i) for i in range(50)]})
    small, large = generate.sample(table, 5, 7), generate.sample(table, 20, 7)
    assert small["source_id"].to_pylist() == large["source_id"].to_pylist()[:5]
    assert generate.sample(table, 5, 8)["source_id"].to_pylist() != small["source_id"].to_pylist()
    assert generate.sample(table, 0, 7).num_rows == 50


def reconcile(workdir) -> tuple:
    """Every (source, op) tried is applied (a contrast row), not applicable, or rejected in the ledger."""
    generated = workdir / "data/generated"
    contrast, attempts = artifacts.read(generated / "contrast"), artifacts.read(generated / "attempts")
    rejections = artifacts.read(generated / "rejections")
    outcomes = attempts["outcome"].to_pylist()
    assert outcomes.count("applied") == contrast.num_rows
    failed = [o for o in outcomes if o not in ("applied", "not_applicable", "pending")]  # pending: no decision
    assert sorted(failed) == sorted(rejections["reason"].to_pylist())
    assert pc.count_distinct(contrast["pair_id"]).as_py() == contrast.num_rows
    return contrast, attempts, rejections


def test_generate_accounts_for_every_source_and_op(pipeline_run):
    contrast, attempts, _ = reconcile(pipeline_run)
    queries = artifacts.read(pipeline_run / "data/ingested/queries")
    params = yaml.safe_load((pipeline_run / "params.yaml").read_text())["generate"]
    rule_rows = attempts.filter(pc.equal(attempts["generator"], "rules"))
    assert rule_rows.num_rows == queries.num_rows * len(params["rules"])
    llm_rows = attempts.filter(pc.not_equal(attempts["generator"], "rules"))
    assert llm_rows.num_rows == params["llm_max_items"] * len(params["llm_controls"])
    assert set(llm_rows["op"].to_pylist()) == {f"llm_{c}" for c in params["llm_controls"]}
    applied = {op for op, o in zip(rule_rows["op"].to_pylist(), rule_rows["outcome"].to_pylist()) if o == "applied"}
    assert {"negation_insert", "number_change", "antonym_flip"} <= applied
    text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
    for row in contrast.to_pylist():
        assert row["original"] == text[row["source_id"]] and row["edited"] != row["original"]
        assert (row["raw_output"] is None) == (row["generator"] == "rules")
        assert row["preserves_meaning"] == row["op"].startswith(("paraphrase_", "llm_paraphrase"))


def test_an_endpoint_that_refuses_or_is_down_fails_the_stage_with_the_fix(pipeline_run, tmp_path, monkeypatch):
    """Before any item: one request, and a stage that stops with exit status 1 and one line naming the endpoint
    and what to fix; the previous artifacts stay as they were."""
    from tests.models.test_llm import closed_port
    from tests.openai_server import OpenAIServer

    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    monkeypatch.delenv(KEY_ENV, raising=False)
    before = artifacts.fingerprint(workdir / "data/generated")
    llm = {"rules": [], "llm_backend": "openai", "llm_api_key_env": KEY_ENV, "llm_max_items": 2}
    with OpenAIServer(llm=None, fault_rate=1.0, faults=("http_401",)) as server:
        set_params(workdir, generate={**llm, "llm_base_url": server.base_url})
        refused = run_stage(workdir, "generate", check=False)
    assert refused.returncode == 1 and len(server.log) == 1
    assert refused.stderr.splitlines()[-1] == (
        f"pairforge generate: the endpoint {server.base_url} (model 'packaged:SmolLM2-135M-Instruct') refused the "
        f"request (HTTP 401): the variable {KEY_ENV} is not set"
    )
    down = f"http://127.0.0.1:{closed_port()}/v1"
    set_params(workdir, generate={"llm_base_url": down})
    gone = run_stage(workdir, "generate", check=False)
    assert gone.returncode == 1 and "Traceback" not in gone.stderr
    assert gone.stderr.splitlines()[-1] == (
        f"pairforge generate: the endpoint {down} did not answer (connection_error, 3 retries): is it running, and "
        f"reachable from this machine?"
    )
    assert artifacts.fingerprint(workdir / "data/generated") == before


@pytest.mark.slow
def test_openai_backend_with_injected_faults_ends_every_item(pipeline_run, tmp_path, monkeypatch):
    """The stage's LLM edits through a real HTTP server in front of the local model, a third of the requests
    failing (500s, 429s, timeouts, malformed bodies): the stage finishes and every item is applied or rejected."""
    from pairforge.pipeline.models import llm as llms
    from tests.openai_server import OpenAIServer

    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    monkeypatch.setenv(KEY_ENV, KEY)
    local = llms.load("transformers", "packaged:SmolLM2-135M-Instruct", batch_size=4)
    with OpenAIServer(local, fault_rate=0.35, seed=3, retry_after_s=0, slow_s=3.0) as server:
        set_params(
            workdir,
            generate={
                "rules": [],
                "llm_backend": "openai",
                "llm_base_url": server.base_url,
                "llm_api_key_env": KEY_ENV,
                "llm_max_items": 2,
                "llm_controls": ["negate", "change_quantity"],
                "llm_max_new_tokens": 40,
                "llm_timeout_s": 1.5,
                # Most items fail here (the slow local model times out too): the budget, which would stop the
                # stage, is lifted to see each of them end pending (tests/test_work.py holds the budget to account).
                "llm_max_failure_share": 1.0,
            },
        )
        first = run_stage(workdir, "generate")
    _, attempts, rejections = reconcile(workdir)
    assert attempts.num_rows == 4
    assert {entry["authorization"] for entry in server.log} == {f"Bearer {KEY}"}
    assert any(entry["fault"] for entry in server.log)  # faults were really injected
    # An item the endpoint failed on is pending: no ledger row, nothing decided about it.
    assert set(rejections["reason"].to_pylist()) <= {"unparseable_output"}
    pending = attempts["outcome"].to_pylist().count("pending")
    assert pending, "with a third of requests failing and a short timeout, some items end pending"
    assert f"{pending} LLM edits pending" in first.stderr
    # The model's answers are cached; the endpoint's failures are not, so the next run asks for exactly those
    # (against the same endpoint, healthy now, with time enough for the slow local model behind it).
    set_params(workdir, generate={"llm_timeout_s": 120.0})
    with OpenAIServer(local, fault_rate=0.0, port=server.port) as healthy:
        rerun = run_stage(workdir, "generate")
    assert f"LLM edits: {pending} made now, {4 - pending} from the cache" in rerun.stderr
    assert len(healthy.log) >= pending + 1, "one preflight request, then the pending items"
    _, attempts, rejections = reconcile(workdir)
    assert "pending" not in attempts["outcome"].to_pylist()
    for path in workdir.rglob("*"):  # artifacts, manifests, cards, caches and metrics alike
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    for run in (first, rerun):  # and the stage's log
        assert KEY not in run.stdout + run.stderr


# 1 item x 2 controls in tasks of 1: a shard per task, so a kill lands between checkpoints. A claim's edit is a
# one-field JSON record of a few dozen tokens: 48 new tokens hold it, and halve the default's worst case.
TWO_EDITS = {
    "llm_max_items": 1,
    "checkpoint_rows": 1,
    "batch_size": 1,
    "llm_controls": ["negate", "change_quantity"],
    "llm_max_new_tokens": 48,
    "rules": [],
}


@pytest.mark.slow
def test_killed_generate_resumes_its_llm_edits_and_writes_the_same_bytes(pipeline_run, tmp_path):
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir, ignore=shutil.ignore_patterns("cache"))
    set_params(workdir, generate=TWO_EDITS)
    kill_at_first_checkpoint(workdir, "generate", "cache/generate/*/shard-*")
    before = artifacts.manifest(workdir / "data/generated/contrast")["content_hash"]
    assert before == artifacts.manifest(pipeline_run / "data/generated/contrast")["content_hash"], "old output kept"
    made = re.search(r"LLM edits: (\d+) made now, (\d+) from the cache", run_stage(workdir, "generate").stderr)
    assert made and int(made[2]) >= 1 and int(made[1]) + int(made[2]) == 2, "only unfinished edits are made again"
    uninterrupted = tmp_path / "uninterrupted"
    shutil.copytree(pipeline_run, uninterrupted, ignore=shutil.ignore_patterns("cache"))
    set_params(uninterrupted, generate=TWO_EDITS)
    run_stage(uninterrupted, "generate")
    for name in ("contrast", "attempts", "rejections"):
        assert artifacts.manifest(workdir / "data/generated" / name) == artifacts.manifest(
            uninterrupted / "data/generated" / name
        )


def test_sentence_files_are_a_source(tmp_path, pipeline_run):
    sick = DATASETS / "sick" / "SICK.txt"
    need(sick, "SICK")
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    sentences = tmp_path / "sick.tsv"
    lines = sick.read_text().splitlines()[:41]  # header + 40 pairs
    # ... and a sentence of a million characters, which spaCy would refuse inside a Ray task, naming no text
    column = lines[0].split("\t").index("sentence_A")
    huge = lines[1].split("\t")
    huge[column] = "a man is playing a guitar " * 40_000
    sentences.write_text("\n".join([*lines, "\t".join(huge)]) + "\n")
    set_params(
        workdir,
        generate={"source": "sentences", "sentences_file": str(sentences), "sentence_column": "sentence_A"},
    )
    set_params(workdir, generate={"llm_backend": "none", "max_items": 0})
    for name in ("generate", "filter", "export"):
        run_stage(workdir, name)
    contrast, attempts, _ = reconcile(workdir)
    assert set(attempts["source_kind"].to_pylist()) == {"sentence"}
    too_long = attempts.filter(pc.equal(attempts["outcome"], "text_too_long"))
    assert len(set(too_long["source_id"].to_pylist())) == 1 and too_long.num_rows == len(GenerateParams().rules)
    assert max(len(t) for t in contrast["original"].to_pylist()) <= 20_000
    assert contrast.num_rows > 0 and set(contrast["source_kind"].to_pylist()) == {"sentence"}
    # A sentence's counterfactuals are exported (and scored, anchor = the sentence) only beside a kept paraphrase.
    edits = artifacts.read(workdir / "data/filtered/edits").to_pylist()
    paraphrased = {e["source_id"] for e in edits if e["decision"] == "kept" and e["preserves_meaning"]}
    exported = contrast_rows_by_edit(workdir)
    kept = [e for e in edits if e["decision"] == "kept" and not e["preserves_meaning"]]
    assert {e["pair_id"] for e in kept if e["source_id"] in paraphrased} == set(exported)
    assert any(e["source_id"] not in paraphrased for e in kept), "some counterfactuals have no paraphrase to pair"
    for rows in exported.values():
        assert all(r["anchor"] == rows[0]["anchor"] and r["negative"] == rows[0]["negative"] for r in rows)


def test_bad_sentence_file_names_file_row_and_field_and_keeps_the_old_artifact(tmp_path, pipeline_run):
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    before = artifacts.fingerprint(workdir / "data/generated")
    bad = tmp_path / "sentences.jsonl"
    bad.write_text('{"sentence": "A dog runs."}\n{"text": "no sentence here"}\n')
    set_params(workdir, generate={"source": "sentences", "sentences_file": str(bad), "llm_backend": "none"})
    result = run_stage(workdir, "generate", check=False)
    assert result.returncode == 1
    assert f"{bad}, row 2, field 'sentence': missing field" in result.stderr
    assert artifacts.fingerprint(workdir / "data/generated") == before
    assert artifacts.read(workdir / "data/generated/contrast").schema.equals(schema.CONTRAST)


def test_positive_documents_as_the_source_give_query_anchored_triplets(tmp_path, pipeline_run):
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    set_params(workdir, generate={"source": "positives", "max_items": 3, "llm_backend": "none"})
    for name in ("generate", "filter", "export"):
        run_stage(workdir, name)
    contrast, attempts, _ = reconcile(workdir)
    corpus = artifacts.read(workdir / "data/ingested/corpus")
    text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    assert set(attempts["source_kind"].to_pylist()) == {"positive"}
    assert len(set(attempts["source_id"].to_pylist())) == 3
    assert all(text[row["source_id"]] == row["original"] for row in contrast.to_pylist())
    queries = artifacts.read(workdir / "data/ingested/queries")
    query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
    positives = artifacts.read(workdir / "data/ingested/positives")
    pairs = set(zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()))
    triplets = export_table(workdir, "contrast-triplet").to_pylist()
    assert triplets
    for row in triplets:  # anchor: a query the edited document answers; positive: that document, unedited
        assert (row["query_id"], row["positive_id"]) in pairs
        assert row["anchor"] == query_text[row["query_id"]] and row["positive"] == text[row["positive_id"]]
        assert row["negative"] != row["positive"]
    # Fluency is judged on the sentence the edit changed, not the abstract: the LM's mean NLL of those sentences.
    from pairforge.pipeline.filtering.edits import FluencyBatch

    config = params.load("filter", workdir / "params.yaml")
    lm = FluencyBatch(config.edit_lm, config.batch_size).lm
    measured = [e for e in artifacts.read(workdir / "data/filtered/edits").to_pylist() if e["nll_increase"] is not None]
    measured = [e for e in measured if e["nll_increase"] == e["nll_increase"]]  # not NaN
    assert measured
    for edit in measured:
        before, after = validate.changed_sentences(edit["original"], edit["edited"])
        assert len(before) < len(edit["original"]), "a sentence of the abstract, not all of it"
        increase = np.subtract(*lm.mean_nll([after, before]))
        assert edit["nll_increase"] == pytest.approx(increase, abs=1e-4), edit
