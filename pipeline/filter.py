"""Filter: catch false negatives (unlabelled positives) among mined negatives, refill, and audit every decision.

Cheap rules run first on every candidate: a negative that is a near-duplicate of one of its query's positives
(same normalised text, word-shingle Jaccard, or embedding cosine above a threshold) is rejected. Expensive judges
(cross-encoder, LLM) then run only on what survives the rules, combined by a policy:

- `sequence`: judges in order; a candidate one judge rejects is not shown to the next (cheapest; decisions as `any`)
- `any`: every judge sees every surviving candidate (all scores recorded); rejected when any judge flags it
- `all`: rejected only when every judge flags it (a judge that clears a candidate ends its evaluation)

Rejected negatives are replaced from the miner's next candidates, in its order (`refill`), in rounds, so judges
only ever score what could still become a negative. Each judged candidate ends kept or rejected with a reason.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.params import FilterParams

JUDGED = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("pos_score", pa.float32()),
        ("round", pa.int32()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("scores", pa.map_(pa.string(), pa.float32())),
    ]
)


@dataclass(frozen=True)
class Judge:
    """An expensive judge. `score` maps a batch of pairs (query_id, doc_id) to named score arrays; `flag` turns
    those scores into a mask of candidates to reject (they look relevant: likely false negatives, or the judge
    could not answer), with a reason code and a detail per row."""

    name: str
    score: Callable[[pa.Table], dict[str, np.ndarray]]
    flag: Callable[[pa.Table, dict[str, np.ndarray]], tuple[np.ndarray, list[str], list[str]]]


def normalise(text: str) -> str:
    """Case, accents, punctuation and spacing removed: texts equal after this say the same thing."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(re.findall(r"[a-z0-9]+", text))


def shingles(text: str, size: int = 3) -> frozenset[str]:
    words = normalise(text).split()
    if len(words) < size:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + size]) for i in range(len(words) - size + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass
class Positives:
    """Per query, the positives' normalised texts, shingle sets and vectors (what near-duplicate rules compare)."""

    texts: dict[str, list[str]]
    shingles: dict[str, list[frozenset[str]]]
    vectors: dict[str, np.ndarray]

    @classmethod
    def build(cls, pairs: list[tuple[str, str]], doc_text: dict[str, str], doc_vector: dict[str, np.ndarray]):
        texts, sets, vectors = {}, {}, {}
        for query_id, doc_id in pairs:
            texts.setdefault(query_id, []).append(normalise(doc_text[doc_id]))
            sets.setdefault(query_id, []).append(shingles(doc_text[doc_id]))
            vectors.setdefault(query_id, []).append(doc_vector[doc_id])
        return cls(texts, sets, {q: np.stack(v) for q, v in vectors.items()})


def near_duplicates(batch: pa.Table, positives: Positives, doc_text: dict[str, str], doc_vector, params: FilterParams):
    """Per row: (is a near-duplicate of a positive, which test caught it, the deciding score)."""
    flagged = np.zeros(batch.num_rows, dtype=bool)
    details, scores = [None] * batch.num_rows, [{} for _ in range(batch.num_rows)]
    for row, (query_id, doc_id) in enumerate(zip(batch["query_id"].to_pylist(), batch["doc_id"].to_pylist())):
        text = doc_text[doc_id]
        if params.duplicate_text and normalise(text) in positives.texts[query_id]:
            flagged[row], details[row], scores[row] = True, "normalised text equals a positive", {"jaccard": 1.0}
            continue
        if params.duplicate_jaccard is not None:
            best = max(jaccard(shingles(text), s) for s in positives.shingles[query_id])
            if best >= params.duplicate_jaccard:
                why = "word-shingle Jaccard with a positive"
                flagged[row], details[row], scores[row] = True, why, {"jaccard": best}
                continue
        if params.duplicate_cosine is not None:
            cosine = float(np.max(positives.vectors[query_id] @ doc_vector[doc_id]))
            if cosine >= params.duplicate_cosine:
                flagged[row], details[row], scores[row] = True, "embedding cosine with a positive", {"cosine": cosine}
    return flagged, details, scores


def cross_encoder_flags(params: FilterParams, positive_ce: dict[str, float]):
    """RocketQA-style absolute and NV-Retriever-style relative thresholds on cross-encoder scores."""

    def flag(batch: pa.Table, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[str]]:
        ce = scores["ce"]
        pos = np.array([positive_ce[q] for q in batch["query_id"].to_pylist()], dtype=np.float32)
        scores["ce_positive"] = pos
        absolute = ce > params.ce_absolute if params.ce_absolute is not None else np.zeros(len(ce), bool)
        relative = ce > params.ce_relative * pos if params.ce_relative is not None else np.zeros(len(ce), bool)
        details = ["above absolute threshold" if a else "above relative threshold" for a in absolute]
        return absolute | relative, ["judge_relevant"] * len(ce), details

    return flag


# Why an LLM judge gave no answer, as a number so it travels in the score arrays (an index into this list).
LLM_FAILURES = ["unparseable_output", "backend_error"]


def llm_flags(params: FilterParams):
    """Reject when P(relevant) is above the threshold. A judge that could not answer rejects too, with its own
    reason and the raw output in the detail: an unverified negative is not worth the risk, and refill replaces it."""

    def flag(batch: pa.Table, scores: dict[str, np.ndarray]) -> tuple[np.ndarray, list[str], list[str]]:
        p_yes, failure, raw = scores["p_yes"], scores["failure"], scores["raw_output"]
        flags, reasons, details = np.zeros(len(p_yes), dtype=bool), [], []
        for i, (p, code) in enumerate(zip(p_yes, failure)):
            if np.isnan(p):
                flags[i] = True
                reasons.append(LLM_FAILURES[int(code)])
                details.append(f"no usable answer; raw output: {raw[i]!r}")
            else:
                flags[i] = p > params.llm_threshold
                reasons.append("judge_relevant")
                details.append(f"P(relevant) {p:.3f}")
        return flags, reasons, details

    return flag


def llm_scores_from_replies(replies: list[str]) -> dict[str, np.ndarray]:
    """Judge scores from plain replies (backends without logits): 1.0 / 0.0 from the parsed answer, NaN if none."""
    from pipeline.tasks import RELEVANCE_JUDGE

    records = [RELEVANCE_JUDGE.parse(reply)[0] for reply in replies]
    p_yes = [np.nan if r is None else float(r["relevant"] == "yes") for r in records]
    return {
        "p_yes": np.array(p_yes, np.float32),
        "failure": np.zeros(len(replies), np.int8),
        "raw_output": np.array(replies, dtype=object),
    }


class LLMJudgeBatch:
    """Actor body: loads an LLM backend once; asks `question` (a key of `pipeline.tasks.QUESTIONS`) about tables
    of (query, document) pairs, e.g. (original, edited) for same_meaning.

    Adds `p_yes` (null when the judge gave no usable answer), `failure` (an index into LLM_FAILURES) and
    `raw_output`, which the ledger keeps so that a failed answer can be inspected.
    """

    def __init__(self, backend: str, model: str, options: dict, question: str = "relevance"):
        from pipeline.models import llm
        from pipeline.tasks import QUESTIONS

        self.llm, self.ask = llm.load(backend, model, **options), QUESTIONS[question]

    def __call__(self, batch: pa.Table) -> pa.Table:
        results = self.ask(self.llm, list(zip(batch["query"].to_pylist(), batch["document"].to_pylist())))
        usable = [r.yes_probability is not None and r.reason in (None, "unparseable_output") for r in results]
        failure = [0 if r.reason in (None, "unparseable_output") else 1 for r in results]
        return (
            batch.append_column(
                "p_yes", pa.array([r.yes_probability if ok else None for r, ok in zip(results, usable)], pa.float32())
            )
            .append_column("failure", pa.array(failure, pa.int8()))
            .append_column("raw_output", pa.array([r.raw_output for r in results], pa.string()))
        )


def _judge(batch: pa.Table, undecided: np.ndarray, judges: list[Judge], policy: str):
    """Apply the judges to the undecided rows of a batch; returns (rejected, reasons, details, scores) per row."""
    rejected = np.zeros(batch.num_rows, dtype=bool)
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
        for i, row in enumerate(rows):
            scores[row].update(
                {f"{judge.name}.{k}": float(v[i]) for k, v in judged.items() if v.dtype.kind in "fiu" and v[i] == v[i]}
            )
            if flags[i]:
                flagged_by[row].append(f"{judge.name}: {why[i]}")
                reasons[row] = reasons[row] or why_code[i]
        if policy == "all":  # a candidate stays under evaluation only while every judge so far flagged it
            active[rows[~flags]] = False
        else:
            rejected[rows[flags]] = True
            if policy == "sequence":
                active[rows[flags]] = False
    if policy == "all":
        rejected = active & bool(judges)
    for row in range(batch.num_rows):
        if rejected[row]:
            details[row] = "; ".join(flagged_by[row])
        else:
            reasons[row] = None
    return rejected, reasons, details, scores


def _queues(pool: pa.Table, params: FilterParams) -> dict[str, list[int]]:
    """Per query, pool rows in the miner's order: its kept negatives, then up to `refill_depth` next candidates."""
    queues: dict[str, list[int]] = {}
    refills: dict[str, int] = {}
    for row, (query_id, decision) in enumerate(zip(pool["query_id"].to_pylist(), pool["decision"].to_pylist())):
        if decision != "kept":
            if not params.refill or refills.get(query_id, 0) >= params.refill_depth:
                continue
            refills[query_id] = refills.get(query_id, 0) + 1
        queues.setdefault(query_id, []).append(row)
    return queues


def run(
    candidates: pa.Table,
    positives: Positives,
    doc_text: dict[str, str],
    doc_vector,
    num_negatives: int,
    params: FilterParams,
    judges: list[Judge],
    query_order: list[str],
) -> pa.Table:
    """Judge the miner's negatives, refilling from its next candidates; returns every judged row (JUDGED schema).

    `candidates` is the mine stage's artifact: kept rows are the first choice, `not_sampled` ones the refills.
    Each round takes, per query, as many candidates as it still needs; rejections raise the need.
    """
    usable = pc.or_kleene(pc.equal(candidates["decision"], "kept"), pc.equal(candidates["reason"], "not_sampled"))
    pool = candidates.filter(usable)
    order = {q: i for i, q in enumerate(query_order)}
    first = pa.array([0 if d == "kept" else 1 for d in pool["decision"].to_pylist()], pa.int8())
    position = pa.array([order[q] for q in pool["query_id"].to_pylist()], pa.int64())
    pool = pool.append_column("_q", position).append_column("_first", first)
    pool = pool.sort_by([("_q", "ascending"), ("_first", "ascending"), ("rank", "ascending")]).drop(["_q", "_first"])
    queues = _queues(pool, params)
    need = {q: num_negatives for q in queues}
    judged = []
    for round_number in range(num_negatives + params.refill_depth + 1):
        take = []
        for query_id in sorted(queues, key=order.__getitem__):
            count = min(need[query_id], len(queues[query_id]))
            take += queues[query_id][:count]
            del queues[query_id][:count]
            need[query_id] -= count
        if not take:
            break
        batch = pool.take(take)
        duplicate, dup_details, dup_scores = near_duplicates(batch, positives, doc_text, doc_vector, params)
        rejected, reasons, details, scores = _judge(batch, ~duplicate, judges, params.policy)
        for row in np.flatnonzero(duplicate):
            reasons[row], details[row], scores[row] = "near_duplicate", dup_details[row], dup_scores[row]
        rejected |= duplicate
        for query_id in batch["query_id"].filter(pa.array(rejected)).to_pylist():
            need[query_id] += 1
        judged.append(
            pa.table(
                {
                    "query_id": batch["query_id"],
                    "doc_id": batch["doc_id"],
                    "rank": batch["rank"],
                    "score": batch["score"],
                    "pos_score": batch["pos_score"],
                    "round": pa.array([round_number] * batch.num_rows, pa.int32()),
                    "decision": pa.array(np.where(rejected, "rejected", "kept")),
                    "reason": pa.array(reasons, pa.string()),
                    "detail": pa.array(details, pa.string()),
                    "scores": pa.array([list(s.items()) for s in scores], JUDGED.field("scores").type),
                },
                schema=JUDGED,
            )
        )
    return pa.concat_tables(judged) if judged else JUDGED.empty_table()
