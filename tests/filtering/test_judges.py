"""The filter's judges: how policies combine them, on hand-made candidates; then through the real stage, a real
cross-encoder in a Ray actor pool, and the local LLM."""

from __future__ import annotations

import dataclasses
import re
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest
import yaml

from pipeline import artifacts
from pipeline.filtering import judges
from tests.conftest import STAGES, export_table, project_params, run_stage, write_beir_sample
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


def judged_rows(workdir):
    judged = artifacts.read(workdir / "data/filtered/judged")
    return [dict(row, scores=dict(row["scores"])) for row in judged.to_pylist()]


def assert_one_model_load(log: str, worker: str) -> None:
    """The judge (its Ray pool, or its worker in the stage process for small work) started once and was kept for
    every later round (see runtime.map_batches)."""
    calls = re.findall(rf"(?:pool: \d+ x {worker} \(.*?\)|in process: {worker}), \d+ tasks, (new \w+, kept|kept)", log)
    assert sum(call.startswith("new") for call in calls) == 1 and len(calls) > 1, calls


def reconcile(workdir) -> None:
    judged = artifacts.read(workdir / "data/filtered/judged")
    kept = pc.sum(pc.equal(judged["decision"], "kept")).as_py()
    rejections = artifacts.read(workdir / "data/filtered/rejections")
    assert judged.num_rows == kept + pc.sum(pc.equal(rejections["kind"], "negative")).as_py()
    assert artifacts.read(workdir / "data/filtered/negatives").num_rows == kept


@pytest.mark.slow
def test_cross_encoder_judge_decides_by_its_thresholds(pipeline_run, cross_encoder_dir, tmp_path):
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["filter"].update(cross_encoder=str(cross_encoder_dir), ce_absolute=0.8, ce_relative=0.9, refill_depth=3)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    assert_one_model_load(run_stage(workdir, "filter").stderr, "CrossEncoderBatch")
    rows = judged_rows(workdir)
    assert max(r["round"] for r in rows) >= 2, "rejections made the filter refill: rounds after the first"
    scored = [r for r in rows if "cross_encoder.ce" in r["scores"]]
    assert scored and len(scored) == sum(1 for r in rows if r["reason"] != "near_duplicate")
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
    run_stage(workdir, "export")
    distilled = export_table(workdir, "n-tuple-scores").to_pylist()
    assert distilled
    for row in distilled:
        expected = [teacher[row["query_id"], row["positive_id"]]]
        expected += [teacher[row["query_id"], d] for d in row["negative_ids"]]
        assert row["score"] == pytest.approx(expected, abs=1e-6), row
    assert f"the cross-encoder `{cross_encoder_dir}`" in (workdir / "data/export/README.md").read_text()


@pytest.mark.slow
def test_llm_judge_with_the_packaged_local_model(scifact, tmp_path):
    # One query, one actor: each judged pair costs the 135M model seconds of CPU, and the mechanics need no more.
    source = write_beir_sample(scifact, tmp_path / "beir", queries=1, docs=20)
    workdir = tmp_path / "project"
    workdir.mkdir()
    params = project_params(
        source,
        index={"topics": 2},
        mine={"range_max": 6, "relative_margin": None},
        generate={"llm_backend": "none", "rules": ["negation_insert"]},
        filter={
            "llm_backend": "transformers",
            "llm_threshold": 0.9,
            "refill_depth": 1,
            "duplicate_cosine": None,
            "actors": 1,
        },
    )
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for name in STAGES[:-1]:
        log = run_stage(workdir, name).stderr
    assert_one_model_load(log, "LLMJudgeBatch")
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
