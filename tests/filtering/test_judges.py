"""The filter's judges: how policies combine them, on hand-made candidates; then through the real stage, a real
cross-encoder in a Ray actor pool, and the local LLM."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml

from pairforge.pipeline import artifacts, ledger, schema
from pairforge.pipeline.filtering import judges, negatives
from tests.conftest import STAGES, export_table, project_params, run_stage, set_params, write_beir_sample
from tests.filtering.test_negatives import RULES_ONLY, candidates, run


class CountingJudge:
    """A real judge over a fixed set of 'relevant' docs, counting the rows it was shown."""

    def __init__(self, name: str, relevant: set[str]):
        self.name, self.relevant, self.seen = name, relevant, 0

    def judge(self) -> judges.Judge:
        def score(batch):
            self.seen += batch.num_rows
            return {"p": np.array([1.0 if d in self.relevant else 0.0 for d in batch["doc_id"].to_pylist()])}

        def flag(batch, scores):
            return scores["p"] > 0.5, ["judge_relevant"] * batch.num_rows, ["looks relevant"] * batch.num_rows

        return judges.Judge(self.name, score, flag)


ALL_KEPT = candidates([("q1", d, i, "kept") for i, d in enumerate("abcd")])


@pytest.mark.parametrize(
    ("policy", "rejected", "second_sees"),
    [("sequence", {"a", "b", "c"}, 2), ("any", {"a", "b", "c"}, 4), ("all", {"b"}, 2)],
)
def test_judge_policies(policy, rejected, second_sees):
    first, second = CountingJudge("first", {"a", "b"}), CountingJudge("second", {"b", "c"})
    params = dataclasses.replace(RULES_ONLY, policy=policy, refill=False)
    judged = run(ALL_KEPT, params, [first.judge(), second.judge()], num_negatives=4)
    assert set(judged.filter(pc.equal(judged["decision"], "rejected"))["doc_id"].to_pylist()) == rejected
    assert second.seen == second_sees
    reasons = judged.filter(pc.equal(judged["decision"], "rejected"))["reason"].to_pylist()
    assert set(reasons) == {"judge_relevant"}


class FlakyJudge(CountingJudge):
    """A judge whose endpoint fails on the `failing` docs (after its retries): they are pending, not flagged."""

    def __init__(self, name: str, relevant: set[str], failing: set[str]):
        super().__init__(name, relevant)
        self.failing = failing

    def judge(self) -> judges.Judge:
        counting = super().judge()

        def flag(batch, scores):
            flags, reasons, details = counting.flag(batch, scores)
            waits = np.array([d in self.failing for d in batch["doc_id"].to_pylist()])
            reasons = ["pending" if w else r for w, r in zip(waits, reasons)]
            return flags & ~waits, reasons, ["endpoint failed" if w else d for w, d in zip(waits, details)]

        return judges.Judge(self.name, counting.score, flag)


REFILLABLE = candidates([("q1", "a", 0, "kept"), ("q1", "b", 1, "kept"), ("q1", "c", 2, "not_sampled"),
                         ("q1", "d", 3, "not_sampled")])  # fmt: skip


def test_a_candidate_its_judge_could_not_ask_about_is_pending_and_its_query_waits():
    """Refilling past a pending candidate would make the output depend on which requests failed: its query takes
    no refill, is short with reason `pending`, and the next run (the endpoint healthy) ends exactly where a run
    without failures does."""
    params = dataclasses.replace(RULES_ONLY, refill_depth=None)
    first = run(REFILLABLE, params, [FlakyJudge("llm", {"a"}, failing={"b"}).judge()], num_negatives=2)
    decided = dict(zip(first["doc_id"].to_pylist(), zip(first["decision"].to_pylist(), first["reason"].to_pylist())))
    assert decided == {"a": ("rejected", "judge_relevant"), "b": ("pending", "pending")}
    (short,) = negatives.short_queries(first, schema.SHORT_QUERIES.empty_table(), 2).to_pylist()
    assert (short["reason"], short["negatives"]) == ("pending", 0) and short["detail"].startswith("1 pending")
    assert ledger.entries("filter", "negative", first.filter(pc.equal(first["decision"], "rejected"))).num_rows == 1
    healed = run(REFILLABLE, params, [FlakyJudge("llm", {"a"}, failing=set()).judge()], num_negatives=2)
    assert healed.equals(run(REFILLABLE, params, [CountingJudge("llm", {"a"}).judge()], num_negatives=2))
    assert healed["decision"].to_pylist() == ["rejected", "kept", "kept"]
    # Another judge's rejection stands whatever the pending one would have said (policy `any` asks both).
    both = [CountingJudge("ce", {"b"}).judge(), FlakyJudge("llm", {"a"}, failing={"b"}).judge()]
    either = run(REFILLABLE, dataclasses.replace(params, policy="any"), both, num_negatives=2)
    assert "pending" not in either["decision"].to_pylist()


def judged(rows: list[tuple[str, str | None, dict]]) -> pa.Table:
    """A judged table of query q1's candidates d0, d1, ..., each (decision, reason, scores)."""
    return pa.Table.from_pylist(
        [
            {
                "query_id": "q1",
                "doc_id": f"d{i}",
                "rank": i,
                "score": 0.5,
                "pos_score": 0.6,
                "round": 1,
                "decision": decision,
                "reason": reason,
                "detail": None,
                "scores": list(scores.items()),
            }  # fmt: skip
            for i, (decision, reason, scores) in enumerate(rows)
        ],
        schema=schema.JUDGED,
    )


def test_a_candidate_is_promoted_when_every_judge_that_scored_it_is_sure():
    found = judged(
        [
            ("rejected", "judge_relevant", {"cross_encoder.ce": 0.97, "cross_encoder.ce_positive": 0.99}),
            ("rejected", "judge_relevant", {"cross_encoder.ce": 0.97, "llm.p_yes": 0.6}),  # the LLM is not sure
            ("rejected", "judge_relevant", {"cross_encoder.ce": 0.96, "llm.p_yes": 0.99}),
            ("rejected", "judge_relevant", {"cross_encoder.ce": 0.91}),  # flagged, but below promote_above
            ("rejected", "near_duplicate", {"cross_encoder.ce": 0.99}),  # a rule's rejection, not a judge's
            ("rejected", "unparseable_output", {}),  # no answer is no confidence
            ("kept", None, {"cross_encoder.ce": 0.99}),  # kept by the policy `all`: the others cleared it
        ]
    )
    promoted = judges.promoted(found, 0.95).to_pylist()
    assert [(p["doc_id"], p["judges"]) for p in promoted] == [("d0", "cross_encoder"), ("d2", "cross_encoder,llm")]
    assert [p["confidence"] for p in promoted] == pytest.approx([0.97, 0.96])
    assert judges.promoted(found, None).num_rows == 0, "promote_above null: none proposed"


def judged_rows(workdir):
    judged = artifacts.read(workdir / "data/filtered/judged")
    return [dict(row, scores=dict(row["scores"])) for row in judged.to_pylist()]


def assert_one_model_load(log: str, worker: str) -> None:
    """The judge (its Ray pool, or its worker in the stage process for small work) started once and was kept for
    every later round (see runtime.map_batches)."""
    calls = re.findall(rf"(?:pool: \d+ x {worker} \(.*?\)|in process: {worker}), \d+ tasks, (new \w+, kept|kept)", log)
    assert sum(call.startswith("new") for call in calls) == 1 and len(calls) > 1, calls


def reconcile(workdir) -> None:
    """Every judged candidate is kept (a negative), rejected (a ledger row) or pending (neither)."""
    judged = artifacts.read(workdir / "data/filtered/judged")
    kept, pending = (pc.sum(pc.equal(judged["decision"], d)).as_py() for d in ("kept", "pending"))
    rejections = artifacts.read(workdir / "data/filtered/rejections")
    assert judged.num_rows == kept + pending + pc.sum(pc.equal(rejections["kind"], "negative")).as_py()
    assert artifacts.read(workdir / "data/filtered/negatives").num_rows == kept


PROMOTE_ABOVE = 0.65  # this STS-B cross-encoder scores SciFact pairs below 0.72


@pytest.mark.slow
def test_cross_encoder_judge_decides_by_its_thresholds(pipeline_run, cross_encoder_dir, tmp_path):
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["filter"].update(cross_encoder=str(cross_encoder_dir), ce_absolute=0.8, ce_relative=0.9, refill_depth=3,
                            promote_above=PROMOTE_ABOVE)  # fmt: skip
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert_one_model_load(run_stage(workdir, "filter").stderr, "CrossEncoderBatch")
    rows = judged_rows(workdir)
    assert max(r["round"] for r in rows) >= 2, "rejections made the filter refill: rounds after the first"
    scored = [r for r in rows if "cross_encoder.ce" in r["scores"]]
    rules = ("near_duplicate", "like_positive", "likely_positive")
    assert scored and len(scored) == sum(1 for r in rows if r["reason"] not in rules)
    for row in scored:
        ce, positive = row["scores"]["cross_encoder.ce"], row["scores"]["cross_encoder.ce_positive"]
        flagged = ce > 0.8 or ce > 0.9 * positive
        assert (row["decision"] == "rejected") == flagged, row
        assert row["reason"] == ("judge_relevant" if flagged else None)
    reconcile(workdir)
    # Streamed in shards of 5 queries (scores from the cache): the same decisions, the same negatives' bytes.
    negatives_hash = artifacts.manifest(workdir / "data/filtered/negatives")["content_hash"]
    params["filter"]["query_shard"] = 5
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(workdir, "filter")
    assert artifacts.manifest(workdir / "data/filtered/negatives")["content_hash"] == negatives_hash
    by_pair = sorted(judged_rows(workdir), key=lambda r: (r["query_id"], r["doc_id"]))
    assert by_pair == sorted(rows, key=lambda r: (r["query_id"], r["doc_id"]))
    reconcile(workdir)
    # The cross-encoder is the teacher: its scores of every positive and kept negative, in n-tuple-scores.
    teacher = artifacts.read(workdir / "data/filtered/teacher").to_pylist()
    teacher = {(t["query_id"], t["doc_id"]): t["score"] for t in teacher}
    kept = {(r["query_id"], r["doc_id"]): r["scores"]["cross_encoder.ce"] for r in rows if r["decision"] == "kept"}
    assert kept and all(teacher[pair] == score for pair, score in kept.items())
    positives = artifacts.read(workdir / "data/ingested/positives")
    judged_queries = {q for q, _ in kept}
    for pair in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()):
        assert pair[0] not in judged_queries or pair in teacher, pair
    # The judge's surest rejections are proposed as extra positives: not in the export by default, but counted.
    promoted = [(p["query_id"], p["doc_id"]) for p in artifacts.read(workdir / "data/filtered/promoted").to_pylist()]
    sure = [r for r in rows if r["reason"] == "judge_relevant" and r["scores"]["cross_encoder.ce"] >= PROMOTE_ABOVE]
    assert promoted and sorted(promoted) == sorted((r["query_id"], r["doc_id"]) for r in sure)
    run_stage(workdir, "export")
    triplets = export_table(workdir, "triplet")
    assert not set(promoted) & set(zip(triplets["query_id"].to_pylist(), triplets["positive_id"].to_pylist()))
    card = (workdir / "data/export/README.md").read_text()
    assert f"{len(promoted)} mined candidates were judged relevant" in card and "not used as positives" in card
    qrels = (workdir / "data/export/promoted-qrels.tsv").read_text().splitlines()
    assert qrels[1:] == [f"{q}\t{d}\t1" for q, d in promoted]
    # Used: every promoted pair of a query with negatives is a positive in the triplets, with the teacher's score.
    set_params(workdir, export={"promote_false_negatives": True})
    run_stage(workdir, "export")
    with_negatives = set(artifacts.read(workdir / "data/filtered/negatives")["query_id"].to_pylist())
    used = {pair for pair in promoted if pair[0] in with_negatives}
    triplets = export_table(workdir, "triplet")
    assert used and used <= set(zip(triplets["query_id"].to_pylist(), triplets["positive_id"].to_pylist()))
    kinds = {(r["query_id"], r["positive_id"]): r["positive_kind"] for r in triplets.to_pylist()}
    assert {kinds[pair] for pair in used} == {"promoted"} and set(kinds.values()) == {"judged", "promoted"}
    assert "They are positives in every format here" in (workdir / "data/export/README.md").read_text()
    distilled = export_table(workdir, "n-tuple-scores").to_pylist()
    assert used & {(row["query_id"], row["positive_id"]) for row in distilled}, "with the teacher's score (below)"
    for row in distilled:
        expected = [teacher[row["query_id"], row["positive_id"]]]
        expected += [teacher[row["query_id"], d] for d in row["negative_ids"]]
        assert row["score"] == pytest.approx(expected, abs=1e-6), row
    assert f"the cross-encoder `{cross_encoder_dir}`" in (workdir / "data/export/README.md").read_text()


@pytest.fixture(scope="module")
def one_query_generated(scifact, tmp_path_factory) -> Path:
    """A project on one SciFact query and 20 documents, run up to its filter (the tests below each ask an LLM
    judge there, in a copy)."""
    root = tmp_path_factory.mktemp("one-query")
    source = write_beir_sample(scifact, root / "beir", queries=1, docs=20)
    workdir = root / "project"
    workdir.mkdir()
    params = project_params(
        source,
        index={"topics": 2},
        mine={"range_max": 6, "relative_margin": None},
        generate={"llm_backend": "none", "rules": ["negation_insert"]},
        filter={"llm_threshold": 0.9, "refill_depth": 1, "duplicate_cosine": None},
    )
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for name in STAGES[: STAGES.index("filter")]:
        run_stage(workdir, name)
    return workdir


def one_query_project(generated: Path, tmp_path: Path, **judge) -> Path:
    """A copy of `one_query_generated` whose filter asks the LLM judge `judge` (its params)."""
    workdir = tmp_path / "project"
    shutil.copytree(generated, workdir)
    set_params(workdir, filter=judge)
    return workdir


@pytest.mark.slow
def test_llm_judge_with_the_packaged_local_model(one_query_generated, tmp_path):
    # One actor: each judged pair costs the 135M model seconds of CPU, and the mechanics need no more.
    workdir = one_query_project(one_query_generated, tmp_path, llm_backend="transformers", actors=1)
    assert_one_model_load(run_stage(workdir, "filter").stderr, "LLMJudgeBatch")
    rows = judged_rows(workdir)
    assert rows
    for row in rows:
        p_yes = row["scores"].get("llm.p_yes")
        if p_yes is None:
            assert row["decision"] == "rejected" and row["reason"] in {"unparseable_output", "backend_error"}
        else:
            assert 0.0 <= p_yes <= 1.0
            assert (row["decision"] == "rejected") == (p_yes > 0.9), row
    reconcile(workdir)


@pytest.mark.slow
def test_an_llm_judge_behind_a_failing_endpoint_leaves_candidates_pending_until_a_run_judges_them(
    one_query_generated, tmp_path
):
    """Through a real server in front of the local model, most requests failing: the candidates the endpoint
    failed on are pending (no ledger row), their query takes no refill and is short with reason `pending`; the
    next run, the endpoint healthy again, asks for nothing it had an answer to."""
    from pairforge.pipeline.models import llm as llms
    from tests.openai_server import OpenAIServer

    local = llms.load("transformers", "packaged:SmolLM2-135M-Instruct", batch_size=4)
    with OpenAIServer(local, fault_rate=0.8, faults=("http_500",), seed=1) as failing:
        endpoint = {"llm_model": "smollm2", "llm_base_url": failing.base_url, "llm_max_failure_share": 1.0}
        workdir = one_query_project(one_query_generated, tmp_path, llm_backend="openai", **endpoint)
        first = run_stage(workdir, "filter")
    pending = [row for row in judged_rows(workdir) if row["decision"] == "pending"]
    assert pending and {row["reason"] for row in pending} == {"pending"}
    assert f"{len(pending)} candidates of 1 queries pending" in first.stderr
    (short,) = artifacts.read(workdir / "data/filtered/short_queries").to_pylist()
    assert short["reason"] == "pending" and short["detail"].startswith(f"{len(pending)} pending")
    ledger_reasons = set(artifacts.read(workdir / "data/filtered/rejections")["reason"].to_pylist())
    assert not ledger_reasons & {"pending", "backend_error", "http_500"}
    reconcile(workdir)
    answered = {entry["key"] for entry in failing.log[1:] if entry["fault"] is None}  # after the preflight request
    with OpenAIServer(local, port=failing.port) as healthy:
        run_stage(workdir, "filter")
    assert healthy.log and not {entry["key"] for entry in healthy.log[1:]} & answered
    assert "pending" not in {row["decision"] for row in judged_rows(workdir)}
    reasons = artifacts.read(workdir / "data/filtered/short_queries")["reason"].to_pylist()
    assert "pending" not in reasons
    reconcile(workdir)
