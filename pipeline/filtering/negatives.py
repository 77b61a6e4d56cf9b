"""False negatives (unlabelled positives) among mined negatives: caught, refilled, and every decision audited.

Cheap rules run first on every candidate: a negative that is a near-duplicate of one of its query's positives
(same normalised text, word-shingle Jaccard, or embedding cosine above a threshold), or as close to the query and
a positive together as that positive is (pair closeness), is rejected. Expensive judges
(`pipeline.filtering.judges`) then run only on what survives the rules.

Rejected negatives are replaced from the miner's next candidates, in its order (`refill`), in rounds, so judges
only ever score what could still become a negative. Each judged candidate ends kept or rejected with a reason.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, ledger, mine, schema
from pairforge.pipeline.filtering import judges, learned
from pairforge.pipeline.filtering.texts import jaccard, normal_form
from pairforge.pipeline.params import FilterParams
from pairforge.pipeline.vocabulary import (
    KEPT,
    LIKE_POSITIVE,
    LIKELY_POSITIVE,
    NEAR_DUPLICATE,
    NOT_SAMPLED,
    PENDING,
    REFILL_EXHAUSTED,
    REJECTED,
)

log = logging.getLogger("pairforge.filter")


@dataclass
class Positives:
    """Per query, the positives' normalised texts, shingle sets and vectors, and the query's own normalised text
    (what near-duplicate rules compare)."""

    texts: dict[str, list[str]]
    shingles: dict[str, list[frozenset[str]]]
    vectors: dict[str, np.ndarray]
    queries: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, pairs: list[tuple[str, str]], documents: Documents, query_text: dict[str, str] | None = None):
        texts, sets, vectors = {}, {}, {}
        for query_id, doc_id in pairs:
            text, runs = documents.words(doc_id)
            texts.setdefault(query_id, []).append(text)
            sets.setdefault(query_id, []).append(runs)
            vectors.setdefault(query_id, []).append(documents.vector[doc_id])
        queries = {q: normal_form(query_text[q])[0] for q in texts if q in (query_text or {})}
        return cls(texts, sets, {q: np.stack(v) for q, v in vectors.items()}, queries)

    def cosine(self, query_id: str, vector: np.ndarray) -> float:
        """A document's highest cosine to one of the query's positives."""
        return float(np.max(self.vectors[query_id] @ vector))

    def cosines(self, candidates: pa.Table, documents: Documents) -> np.ndarray:
        """Per candidate row, its highest cosine to one of its query's positives."""
        rows = zip(candidates["query_id"].to_pylist(), candidates["doc_id"].to_pylist())
        return np.array([self.cosine(q, documents.vector[d]) for q, d in rows])


def near_duplicates(batch: pa.Table, positives: Positives, documents: Documents, params: FilterParams):
    """Per row: the reason it is too like a positive (None: it is not), which test caught it, the deciding score.

    A near-duplicate has a positive's text, shingles or embedding; a candidate `like_positive` is as close to the
    query and a positive together as that positive is (`pair_closeness`, with the miner's scores: `score` is the
    candidate's cosine to the query, `pos_score` the positive's)."""
    reasons, details = [None] * batch.num_rows, [None] * batch.num_rows
    scores = [{} for _ in range(batch.num_rows)]
    to_query, positive_to_query = batch["score"].to_pylist(), batch["pos_score"].to_pylist()
    chances = batch["likely"].to_pylist() if "likely" in batch.column_names else [None] * batch.num_rows
    rows = zip(batch["query_id"].to_pylist(), batch["doc_id"].to_pylist(), to_query, positive_to_query, chances)
    for row, (query_id, doc_id, score, pos_score, chance) in enumerate(rows):
        text, runs = documents.words(doc_id)
        if params.duplicate_text and text in positives.texts[query_id]:
            why = "normalised text equals a positive"
            reasons[row], details[row], scores[row] = NEAR_DUPLICATE, why, {"jaccard": 1.0}
            continue
        if params.duplicate_text and text == positives.queries.get(query_id):  # the query itself, in the corpus
            why = "normalised text equals the query"
            reasons[row], details[row], scores[row] = NEAR_DUPLICATE, why, {"jaccard": 1.0}
            continue
        if params.duplicate_jaccard is not None:
            best = max(jaccard(runs, s) for s in positives.shingles[query_id])
            if best >= params.duplicate_jaccard:
                why = "word-shingle Jaccard with a positive"
                reasons[row], details[row], scores[row] = NEAR_DUPLICATE, why, {"jaccard": best}
                continue
        if chance is not None and params.likely_positive_above is not None and chance >= params.likely_positive_above:
            why = "learned chance of being an unlabelled positive"
            reasons[row], details[row], scores[row] = LIKELY_POSITIVE, why, {"chance": chance}
            continue
        cosine = positives.cosine(query_id, documents.vector[doc_id])
        if params.duplicate_cosine is not None and cosine >= params.duplicate_cosine:
            why = "embedding cosine with a positive"
            reasons[row], details[row], scores[row] = NEAR_DUPLICATE, why, {"cosine": cosine}
            continue
        if params.pair_closeness is not None and pos_score is not None and pos_score > -1:
            closeness = (score + cosine) / (1 + pos_score)
            if closeness >= params.pair_closeness:
                why = "as close to the query and its positive as the positive is"
                reasons[row], details[row] = LIKE_POSITIVE, why
                scores[row] = {"closeness": closeness, "cosine": cosine}
    return reasons, details, scores


def _queues(pool: pa.Table, params: FilterParams) -> dict[str, list[int]]:
    """Per query, pool rows in the miner's order: its kept negatives, then up to `refill_depth` next candidates
    (every one with `refill_depth` null)."""
    queues: dict[str, list[int]] = {}
    refills: dict[str, int] = {}
    for row, (query_id, decision) in enumerate(zip(pool["query_id"].to_pylist(), pool["decision"].to_pylist())):
        if decision != KEPT:
            depth = params.refill_depth
            if not params.refill or (depth is not None and refills.get(query_id, 0) >= depth):
                continue
            refills[query_id] = refills.get(query_id, 0) + 1
        queues.setdefault(query_id, []).append(row)
    return queues


def run(
    candidates: pa.Table,
    positives: Positives,
    documents: Documents,
    num_negatives: int,
    params: FilterParams,
    judges_in_order: list[judges.Judge],
    query_order: list[str],
) -> pa.Table:
    """Judge the miner's negatives, refilling from its next candidates; returns every judged row (`schema.JUDGED`).

    `candidates` is the mine stage's artifact: kept rows are the first choice, `not_sampled` ones the refills.
    Each round takes, per query, as many candidates as it still needs; rejections raise the need.
    """
    usable = pc.or_kleene(pc.equal(candidates["decision"], KEPT), pc.equal(candidates["reason"], NOT_SAMPLED))
    pool = candidates.filter(usable)
    order = {q: i for i, q in enumerate(query_order)}
    first = pa.array([0 if d == KEPT else 1 for d in pool["decision"].to_pylist()], pa.int8())
    position = pa.array([order[q] for q in pool["query_id"].to_pylist()], pa.int64())
    pool = pool.append_column("_q", position).append_column("_first", first)
    pool = pool.sort_by([("_q", "ascending"), ("_first", "ascending"), ("rank", "ascending")]).drop(["_q", "_first"])
    queues = _queues(pool, params)
    need = {q: num_negatives for q in queues}
    judged = []
    rounds = max(map(len, queues.values()), default=0) + 1  # each round takes at least one row of a live queue
    for round_number in range(rounds):
        take = []
        for query_id in sorted(queues, key=order.__getitem__):
            count = min(need[query_id], len(queues[query_id]))
            take += queues[query_id][:count]
            del queues[query_id][:count]
            need[query_id] -= count
        if not take:
            break
        batch = pool.take(take)
        like, like_details, like_scores = near_duplicates(batch, positives, documents, params)
        duplicate = np.array([reason is not None for reason in like], dtype=bool)
        rejected, pending, reasons, details, scores = judges.decide(batch, ~duplicate, judges_in_order,
                                                                    params.policy)  # fmt: skip
        for row in np.flatnonzero(duplicate):
            reasons[row], details[row], scores[row] = like[row], like_details[row], like_scores[row]
        if "likely" in batch.column_names:  # the learned chance, on every row it was worked out for
            for row, chance in enumerate(batch["likely"].to_pylist()):
                scores[row] = {**scores[row], "chance": chance}
        rejected |= duplicate
        for query_id in batch["query_id"].filter(pa.array(rejected)).to_pylist():
            need[query_id] += 1
        # A query with a candidate pending takes no refill this run: whether it needs one depends on the answer
        # the next run gets, and refilling now would make the output depend on which requests failed.
        for query_id in batch["query_id"].filter(pa.array(pending)).to_pylist():
            need[query_id] = 0
            queues[query_id].clear()
        judged.append(
            pa.table(
                {
                    "query_id": batch["query_id"],
                    "doc_id": batch["doc_id"],
                    "rank": batch["rank"],
                    "score": batch["score"],
                    "pos_score": batch["pos_score"],
                    "round": pa.array([round_number] * batch.num_rows, pa.int32()),
                    "decision": pa.array(np.where(rejected, REJECTED, np.where(pending, PENDING, KEPT))),
                    "reason": pa.array(reasons, pa.string()),
                    "detail": pa.array(details, pa.string()),
                    "scores": pa.array([list(s.items()) for s in scores], schema.JUDGED.field("scores").type),
                },
                schema=schema.JUDGED,
            )
        )
    return pa.concat_tables(judged) if judged else schema.JUDGED.empty_table()


def short_queries(judged: pa.Table, mined_short: pa.Table, num_negatives: int) -> pa.Table:
    """The queries of `judged` (whole queries) left with fewer than `num_negatives` negatives: mine's reason where
    its window already left them short (`mined_short`: its `short_queries`), else `refill_exhausted`; with what
    the filter rejected, by reason, before mine's own detail."""
    mined = {row["query_id"]: row for row in mined_short.to_pylist()}
    kept, rejected = collections.Counter(), collections.defaultdict(collections.Counter)
    pending = collections.Counter()
    for query_id, decision, reason in zip(*(judged[c].to_pylist() for c in ("query_id", "decision", "reason"))):
        kept[query_id] += decision == KEPT
        pending[query_id] += decision == PENDING
        if decision == REJECTED:
            rejected[query_id][reason] += 1
    rows = []
    for query_id in dict.fromkeys(judged["query_id"].to_pylist()):
        if kept[query_id] >= num_negatives:
            continue
        counts = ", ".join(f"{r}: {n}" for r, n in sorted(rejected[query_id].items()))
        before = mined.get(query_id)
        waiting = f"{pending[query_id]} pending (the judge's endpoint failed; the next run judges them)"
        parts = (pending[query_id] and waiting, f"filter {counts}" if counts else "", before and before["detail"])
        reason = PENDING if pending[query_id] else before["reason"] if before else REFILL_EXHAUSTED
        rows.append(
            {
                "query_id": query_id,
                "negatives": kept[query_id],
                "depth": before["depth"] if before else None,
                "reason": reason,
                "detail": "; ".join(part for part in parts if part),
            }
        )
    return pa.Table.from_pylist(rows, schema=schema.SHORT_QUERIES)


def never_judged(mined_short: pa.Table, judged: set[str]) -> pa.Table:
    """Mine's short queries that no shard judged (mine kept nothing for them, and had nothing to refill from)."""
    return mined_short.filter(pc.invert(pc.is_in(mined_short["query_id"], pa.array(sorted(judged), pa.string()))))


@dataclass(frozen=True)
class Shard:
    """A shard of whole queries, judged: every judged row, the negatives kept (per query in the shard's order, by
    rank, with their topic), the ledger rows of the rejected ones, the queries left short, the candidates proposed
    as extra positives, and the teacher's scores of the positives, kept negatives and proposed positives
    (`schema.TEACHER`; `judge_shard` adds them)."""

    judged: pa.Table
    negatives: pa.Table
    rejections: pa.Table
    short: pa.Table
    promoted: pa.Table = field(default_factory=schema.PROMOTED.empty_table)
    teacher: pa.Table = field(default_factory=schema.TEACHER.empty_table)


@dataclass(frozen=True)
class Documents:
    """The texts and vectors of the documents a set of queries' candidates and positives name. With `remember`,
    each text's normalised form and shingles are worked out once (calibration walks the same documents once per
    setting); without it, per use, so a shard's documents do not hold several copies of their text in memory."""

    text: dict[str, str]
    vector: dict[str, np.ndarray]
    remember: bool = False
    _words: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, corpus: Path, embeddings: Path, *tables: pa.Table, remember: bool = False) -> Documents:
        """Read from the `corpus` and `embeddings` corpus artifacts only the documents the tables' `doc_id` name."""
        doc_ids = pc.unique(pa.concat_arrays([pc.unique(t["doc_id"]).cast(pa.string()) for t in tables]))
        texts = artifacts.select(corpus, "doc_id", doc_ids, ["doc_id", "text"])
        vectors = artifacts.select(embeddings, "id", doc_ids, ["id", "vector"])
        return cls(
            dict(zip(texts["doc_id"].to_pylist(), texts["text"].to_pylist())),
            dict(zip(vectors["id"].to_pylist(), schema.vectors_matrix(vectors["vector"]))),
            remember,
        )

    def words(self, doc_id: str) -> tuple[str, frozenset[str]]:
        """A document's normalised text and its shingles: what the near-duplicate rules compare."""
        found = self._words.get(doc_id)
        if found is None:
            found = normal_form(self.text[doc_id])
            if self.remember:
                self._words[doc_id] = found
        return found


def judge(
    candidates: pa.Table,
    positives: pa.Table,
    query_text: dict[str, str],
    documents: Documents,
    doc_topics: pa.Table | None,
    num_negatives: int,
    params: FilterParams,
    mined_short: pa.Table | None = None,
    likely: learned.LikelyPositive | learned.CrossFitted | None = None,
) -> Shard:
    """Judge mined candidates (whole queries) against their queries' `positives`. `mined_short`: mine's short
    queries, whose reasons the short queries keep; `likely`: the learned model of unlabelled positives, whose
    chance `filter.likely_positive_above` rejects at."""
    query_order = pc.unique(candidates["query_id"])
    positives = positives.filter(pc.is_in(positives["query_id"], query_order))
    pairs = list(zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()))
    known = Positives.build(pairs, documents, query_text)
    if likely is not None and params.likely_positive_above is not None:
        to_positive = known.cosines(candidates, documents)
        candidates = candidates.append_column("likely", pa.array(likely.chance(candidates, to_positive)))
    in_order = judges.configured(params, query_text, documents.text, positives)
    judged = run(candidates, known, documents, num_negatives, params, in_order, query_order.to_pylist())
    # Judged rows come round by round; negatives go out per query (in the shard's order), by rank.
    negatives = mine.negatives(judged, doc_topics)
    at = pc.index_in(negatives["query_id"], query_order)
    negatives = negatives.append_column("_q", at).sort_by([("_q", "ascending"), ("rank", "ascending")]).drop(["_q"])
    rejected = judged.filter(pc.equal(judged["decision"], REJECTED))
    short = short_queries(judged, schema.SHORT_QUERIES.empty_table() if mined_short is None else mined_short,
                          num_negatives)  # fmt: skip
    promoted = judges.promoted(judged, params.promote_above)
    waiting = judged.filter(pc.equal(judged["decision"], PENDING))
    if waiting.num_rows:
        log.warning(
            "%d candidates of %d queries pending: the judge's endpoint failed on them after its retries; run the "
            "filter again (dvc repro -f filter) to judge exactly those", waiting.num_rows,
            len(pc.unique(waiting["query_id"])),
        )  # fmt: skip
    return Shard(judged, negatives, ledger.entries("filter", "negative", rejected), short, promoted)


def judge_shard(
    candidates: pa.Table,
    positives: pa.Table,
    query_text: dict[str, str],
    corpus: Path,
    embeddings: Path,
    doc_topics: pa.Table | None,
    num_negatives: int,
    params: FilterParams,
    mined_short: pa.Table | None = None,
    likely: learned.LikelyPositive | None = None,
) -> Shard:
    """`judge` one shard of the mined candidates (whole queries), reading only its documents' texts (from the
    `corpus` artifact) and vectors (from the `embeddings` corpus artifact); with the teacher's scores."""
    own = positives.filter(pc.is_in(positives["query_id"], pc.unique(candidates["query_id"])))
    documents = Documents.load(corpus, embeddings, candidates, own)
    shard = judge(candidates, own, query_text, documents, doc_topics, num_negatives, params, mined_short, likely)
    pairs = pa.concat_tables([t.select(["query_id", "doc_id"]) for t in (own, shard.negatives, shard.promoted)])
    return replace(shard, teacher=judges.teacher(params, query_text, documents.text, pairs))
