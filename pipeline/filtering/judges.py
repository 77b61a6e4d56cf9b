"""Expensive judges of mined negatives: a cross-encoder and an LLM, each a declared model call (`pipeline.work`)
whose actor pool is kept for the stage's refill rounds and query shards, and whose answers are cached.

A judge scores (query, document) pairs and flags the ones that look relevant (likely false negatives). Judges
combine by a policy:

- `sequence`: judges in order; a candidate one judge rejects is not shown to the next (cheapest; decisions as `any`)
- `any`: every judge sees every surviving candidate (all scores recorded); rejected when any judge flags it
- `all`: rejected only when every judge flags it (a judge that clears a candidate ends its evaluation)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import models, schema, work
from pairforge.pipeline.params import FilterParams
from pairforge.pipeline.runtime import Resources
from pairforge.pipeline.tasks import JUDGE_TASKS, QUESTIONS
from pairforge.pipeline.vocabulary import BACKEND_ERROR, JUDGE_RELEVANT, PENDING, UNPARSEABLE, passing_failure


@dataclass(frozen=True)
class Judge:
    """An expensive judge. `score` maps a batch of pairs (query_id, doc_id) to named score arrays; `flag` turns
    those scores into a mask of candidates to reject (they look relevant: likely false negatives, or the judge
    could not answer), with a reason code and a detail per row; reason `pending` on a row it did not flag: its
    endpoint failed on the row, which stays undecided."""

    name: str
    score: Callable[[pa.Table], dict[str, np.ndarray]]
    flag: Callable[[pa.Table, dict[str, np.ndarray]], tuple[np.ndarray, list[str], list[str]]]


def pool(config: FilterParams) -> Resources:
    return Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)


def cross_encoder_call(config: FilterParams) -> work.Work:
    """The cross-encoder `config` names, scoring (query, document) pairs; scores cached by model and length limit."""
    from pairforge.pipeline.models.scorer import CrossEncoderBatch

    args = {"model": config.cross_encoder, "max_length": config.ce_max_length, "batch_size": config.batch_size}
    settings = {"model": models.identity(config.cross_encoder), "max_length": config.ce_max_length}
    return work.Work(
        worker=CrossEncoderBatch,
        args={**args, "device": "auto"},
        resources=pool(config),
        rows_per_task=config.batch_size * 4,
        columns=("ce_score",),
        inputs=("query", "document"),
        cache=work.Cache(Path(config.cache) / "cross_encoder", settings, config.checkpoint_rows),
        # Kept: the judge scores every refill round and query shard, and would otherwise load the model each time.
        keep_pool=True,
    )


def cross_encoder_scores(config: FilterParams, query: list[str], document: list[str]) -> np.ndarray:
    table = pa.table({"query": pa.array(query, pa.string()), "document": pa.array(document, pa.string())})
    return work.compute(cross_encoder_call(config), table)[0]["ce_score"].to_numpy().astype(np.float32)


def teacher(config: FilterParams, query_text: dict, doc_text: dict, pairs: pa.Table) -> pa.Table:
    """The cross-encoder's score of each (query_id, doc_id) pair (`schema.TEACHER`), from its cache where it judged
    them already; empty when the filter runs no cross-encoder."""
    if not config.cross_encoder or not pairs.num_rows:
        return schema.TEACHER.empty_table()
    queries = [query_text[q] for q in pairs["query_id"].to_pylist()]
    scores = cross_encoder_scores(config, queries, [doc_text[d] for d in pairs["doc_id"].to_pylist()])
    return pa.table([pairs["query_id"], pairs["doc_id"], pa.array(scores, pa.float32())], schema=schema.TEACHER)


# Why an LLM judge gave no answer, as a number so it travels in the score arrays (an index into this list):
# a reply that did not parse, the backend's refusal of the item, its endpoint's passing failure.
LLM_FAILURES = [UNPARSEABLE, BACKEND_ERROR, PENDING]


class LLMJudgeBatch:
    """Actor body: loads an LLM backend once; asks each row's `question` (a key of `pipeline.tasks.QUESTIONS`)
    about its (query, document) pair, e.g. (original, edited) for same_meaning. One pool serves every question.

    Adds `p_yes` (null when the judge gave no usable answer), `failure` (an index into LLM_FAILURES) and
    `raw_output`, which the ledger keeps so that a failed answer can be inspected.
    """

    def __init__(self, backend: str, model: str, options: dict):
        from pairforge.pipeline.models import llm

        self.llm = llm.load(backend, model, **options)

    def __call__(self, batch: pa.Table) -> pa.Table:
        questions, results = batch["question"].to_pylist(), [None] * batch.num_rows
        pairs = list(zip(batch["query"].to_pylist(), batch["document"].to_pylist()))
        for question in dict.fromkeys(questions):
            rows = [i for i, asked in enumerate(questions) if asked == question]
            for row, result in zip(rows, QUESTIONS[question](self.llm, [pairs[i] for i in rows])):
                results[row] = result
        answered = [r.reason in (None, UNPARSEABLE) for r in results]
        failure = [0 if ok else 2 if passing_failure(r.reason) else 1 for r, ok in zip(results, answered)]
        return (
            batch.append_column(
                "p_yes",
                pa.array([r.yes_probability if ok else None for r, ok in zip(results, answered)], pa.float32()),
            )
            .append_column("failure", pa.array(failure, pa.int8()))
            .append_column("raw_output", pa.array([r.raw_output for r in results], pa.string()))
        )


def llm_answer_call(config: FilterParams, question: str) -> work.Work:
    """The LLM `config` names, asked `question` about pairs; answers cached by backend, model, endpoint and the
    prompt's wording (a reworded prompt asks afresh). An endpoint's failures are not cached: the next run asks."""
    options, resources = work.llm_call(config)
    settings = {
        "backend": config.llm_backend,
        "model": models.identity(config.llm_model),
        "base_url": config.llm_base_url,
        "task": repr(JUDGE_TASKS[question]),
    }
    if config.llm_backend == "vllm":  # its P(yes) comes from logprobs now: not the 0/1 answers cached before
        settings["p_yes"] = "logprobs"
    if config.llm_backend == "openai":  # reply and P(yes) from one request now, no longer two
        settings["p_yes"] = "reply logprobs"
    return work.Work(
        worker=LLMJudgeBatch,
        args={"backend": config.llm_backend, "model": config.llm_model, "options": options},
        resources=resources,
        rows_per_task=config.batch_size,
        columns=("p_yes", "failure", "raw_output"),
        inputs=("query", "document", "question"),
        key=("query", "document"),
        cache=work.Cache(Path(config.cache) / f"llm_{question}", settings, config.checkpoint_rows),
        keep_pool=True,  # as the cross-encoder's; the same pool answers both questions
        cacheable=lambda results: pc.equal(results["failure"], 0),
        endpoint=work.llm_endpoint(config, lambda results: pc.equal(results["failure"], LLM_FAILURES.index(PENDING))),
    )


def llm_answers(config: FilterParams, question: str, query: list[str], document: list[str]) -> pa.Table:
    """`p_yes` (null without a usable answer), `failure` (an index into LLM_FAILURES) and `raw_output` per pair."""
    table = pa.table(
        {
            "query": pa.array(query, pa.string()),
            "document": pa.array(document, pa.string()),
            "question": pa.array([question] * len(query), pa.string()),
        }
    )
    return work.compute(llm_answer_call(config, question), table)[0].select(["p_yes", "failure", "raw_output"])


def cross_encoder_flags(params: FilterParams, positive_ce: dict[str, float]):
    """RocketQA-style absolute and NV-Retriever-style relative thresholds on cross-encoder scores."""

    def flag(batch: pa.Table, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[str]]:
        ce = scores["ce"]
        pos = np.array([positive_ce[q] for q in batch["query_id"].to_pylist()], dtype=np.float32)
        scores["ce_positive"] = pos
        absolute = ce > params.ce_absolute if params.ce_absolute is not None else np.zeros(len(ce), bool)
        relative = ce > params.ce_relative * pos if params.ce_relative is not None else np.zeros(len(ce), bool)
        details = ["above absolute threshold" if a else "above relative threshold" for a in absolute]
        return absolute | relative, [JUDGE_RELEVANT] * len(ce), details

    return flag


def llm_flags(params: FilterParams):
    """Reject when P(relevant) is above the threshold. A judge that could not answer rejects too, with its own
    reason and the raw output in the detail: an unverified negative is not worth the risk, and refill replaces it.
    Where its endpoint failed, the candidate is pending instead: the next run asks again."""

    def flag(batch: pa.Table, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[str]]:
        p_yes, failure, raw = scores["p_yes"], scores["failure"], scores["raw_output"]
        flags, reasons, details = np.zeros(len(p_yes), dtype=bool), [], []
        for i, (p, code) in enumerate(zip(p_yes, failure)):
            if LLM_FAILURES[int(code)] == PENDING:
                reasons.append(PENDING)
                details.append(f"not judged: the endpoint failed ({raw[i]!r})")
            elif np.isnan(p):
                flags[i] = True
                reasons.append(LLM_FAILURES[int(code)])
                details.append(f"no usable answer; raw output: {raw[i]!r}")
            else:
                flags[i] = p > params.llm_threshold
                reasons.append(JUDGE_RELEVANT)
                details.append(f"P(relevant) {p:.3f}")
        return flags, reasons, details

    return flag


def configured(config: FilterParams, query_text: dict, doc_text: dict, positives: pa.Table) -> list[Judge]:
    """The judges `config` turns on, in order: the cross-encoder (its positives scored once, up front, for the
    relative threshold), then the LLM."""

    def texts(pairs: pa.Table) -> tuple[list[str], list[str]]:
        queries = [query_text[q] for q in pairs["query_id"].to_pylist()]
        return queries, [doc_text[d] for d in pairs["doc_id"].to_pylist()]

    judges = []
    if config.cross_encoder:

        def ce(pairs: pa.Table) -> dict[str, np.ndarray]:
            return {"ce": cross_encoder_scores(config, *texts(pairs))}

        hardest: dict[str, float] = {}
        for query_id, value in zip(positives["query_id"].to_pylist(), ce(positives)["ce"]):
            hardest[query_id] = min(float(value), hardest.get(query_id, float(value)))
        judges.append(Judge("cross_encoder", ce, cross_encoder_flags(config, hardest)))
    if config.llm_backend != "none":

        def relevance(pairs: pa.Table) -> dict[str, np.ndarray]:
            out = llm_answers(config, "relevance", *texts(pairs))
            return {
                "p_yes": out["p_yes"].to_numpy(zero_copy_only=False).astype(np.float32),
                "failure": out["failure"].to_numpy(),
                "raw_output": np.array(out["raw_output"].to_pylist(), object),
            }

        judges.append(Judge("llm", relevance, llm_flags(config)))
    return judges


# Each judge's confidence that a pair is relevant, under the name `decide` records it by in a judged row's `scores`.
CONFIDENCE = {"cross_encoder": "cross_encoder.ce", "llm": "llm.p_yes"}


def names(config: FilterParams) -> dict[str, str]:
    """The judges `config` turns on, each with the model it runs (as the user named it)."""
    found = {"cross_encoder": config.cross_encoder} if config.cross_encoder else {}
    return found | ({"llm": f"{config.llm_backend}:{config.llm_model}"} if config.llm_backend != "none" else {})


def promoted(judged: pa.Table, above: float | None) -> pa.Table:
    """The judged candidates rejected as relevant whose every judge that scored them was at least `above` sure:
    proposed extra positives (`schema.PROMOTED`), in judged order, with the lowest confidence and the judges."""
    rows = []
    if above is not None:
        relevant = judged.filter(pc.equal(judged["reason"], JUDGE_RELEVANT))
        for row in relevant.select(["query_id", "doc_id", "rank", "score", "scores"]).to_pylist():
            scores = dict(row.pop("scores") or [])
            sure = {name: scores[key] for name, key in CONFIDENCE.items() if key in scores}
            if sure and min(sure.values()) >= above:
                rows.append({**row, "confidence": min(sure.values()), "judges": ",".join(sure)})
    return pa.Table.from_pylist(rows, schema=schema.PROMOTED)


def decide(batch: pa.Table, undecided: np.ndarray, judges: list[Judge], policy: str):
    """Apply the judges to the undecided rows of a batch; returns (rejected, pending, reasons, details, scores) per
    row. A row a judge could not answer (its endpoint failed) is pending unless another judge rejects it: it is
    shown to no later judge, and decided on the next run."""
    rejected, pending = np.zeros(batch.num_rows, dtype=bool), np.zeros(batch.num_rows, dtype=bool)
    reasons, details = [None] * batch.num_rows, [None] * batch.num_rows
    scores = [{} for _ in range(batch.num_rows)]
    flagged_by: list[list[str]] = [[] for _ in range(batch.num_rows)]
    active = undecided.copy()
    for judge in judges:
        rows = np.flatnonzero(active)
        if not len(rows):
            break
        subset = batch.take(rows)
        judged = judge.score(subset)
        flags, why_code, why = judge.flag(subset, judged)
        waits = np.array([code == PENDING for code in why_code], dtype=bool) & ~flags
        for i, row in enumerate(rows):
            scores[row].update(
                {f"{judge.name}.{k}": float(v[i]) for k, v in judged.items() if v.dtype.kind in "fiu" and v[i] == v[i]}
            )
            if flags[i] or waits[i]:
                flagged_by[row].append(f"{judge.name}: {why[i]}")
            if flags[i]:
                reasons[row] = reasons[row] or why_code[i]
        pending[rows[waits]] = True
        active[rows[waits]] = False
        if policy == "all":  # a candidate stays under evaluation only while every judge so far flagged it
            active[rows[~flags]] = False
        else:
            rejected[rows[flags]] = True
            if policy == "sequence":
                active[rows[flags]] = False
    if policy == "all":
        rejected = active & bool(judges)
    pending &= ~rejected
    for row in range(batch.num_rows):
        if rejected[row] or pending[row]:
            details[row] = "; ".join(flagged_by[row])
        reasons[row] = PENDING if pending[row] else reasons[row] if rejected[row] else None
    return rejected, pending, reasons, details, scores
