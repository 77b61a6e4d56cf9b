"""Hard-negative mining with the knobs of sentence-transformers' `mine_hard_negatives`, same meanings.

For each query: search the index, drop its known positives, and walk the remaining candidates in score order.
`rank` is a candidate's 0-based position in that list (known positives removed). A candidate is kept when
range_min <= rank < range_max, it passes every score rule, and sampling picks it. Every inspected candidate is
returned with its decision and a stable reason code, so the dataset can be audited and the rules retuned.

Margins compare against the query's hardest positive (its lowest-scoring one), as the peer does: a negative
must sit below every positive of its query.

Deliberate differences from the peer (sentence-transformers 6.x), each a case where it departs from its own
documentation:
- range_min: the peer skips the first range_min candidates that *survive* the score rules, so with a margin it
  skips valid negatives well past rank range_min. Here range_min counts retrieval ranks, as documented.
- range_max: the peer's pool holds range_max + (most positives of any query - this query's positives)
  candidates, so one query's window depends on other queries. Here it is exactly range_max for every query.
- sampling "random": the peer draws from Python's global `random`; here each query draws from its own generator
  seeded by (seed, query id), so results do not depend on batching, actor count or run order.
With no score rules and range_min = 0 (or no score rules at all), "top" sampling gives the peer's negatives.
"""

from __future__ import annotations

import collections
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, ledger, runtime, schema, sharded, work
from pairforge.pipeline.params import MineParams
from pairforge.pipeline.schema import vectors_matrix
from pairforge.pipeline.vocabulary import (
    ABOVE_ABSOLUTE_MARGIN,
    ABOVE_MAX_SCORE,
    ABOVE_RELATIVE_MARGIN,
    BELOW_MIN_SCORE,
    BELOW_RANGE_MIN,
    CORPUS_EXHAUSTED,
    KEPT,
    KNOWN_POSITIVE,
    NOT_SAMPLED,
    REJECTED,
    WINDOW_EXHAUSTED,
)


def score_rule_reasons(scores: np.ndarray, pos_score: float, params: MineParams) -> np.ndarray:
    """Per candidate: the first score rule it breaks, or None."""
    reasons = np.full(len(scores), None, dtype=object)

    def mark(broken: np.ndarray, code: str) -> None:
        reasons[broken & (reasons == None)] = code  # noqa: E711 - elementwise comparison on an object array

    if params.absolute_margin is not None:
        mark(scores + params.absolute_margin > pos_score, ABOVE_ABSOLUTE_MARGIN)
    if params.relative_margin is not None:
        mark(scores > pos_score - abs(pos_score) * params.relative_margin, ABOVE_RELATIVE_MARGIN)
    if params.max_score is not None:
        mark(scores > params.max_score, ABOVE_MAX_SCORE)
    if params.min_score is not None:
        mark(scores < params.min_score, BELOW_MIN_SCORE)
    return reasons


def select(valid: np.ndarray, query_id: str, params: MineParams) -> np.ndarray:
    """Indices (into the valid candidates, which are in score order) that sampling keeps, in score order."""
    if params.sampling == "top" or len(valid) <= params.num_negatives:
        return valid[: params.num_negatives]
    rng = np.random.default_rng([params.seed, zlib.crc32(query_id.encode())])
    return np.sort(rng.choice(valid, params.num_negatives, replace=False))


def _window_end(rank: np.ndarray, passes: np.ndarray, retrieved: int, params: MineParams) -> int:
    """Where a query's window ends: `range_max`, doubled while fewer than `num_negatives` candidates in it pass
    the score rules, up to `range_limit` and to the candidates retrieved (`passes`: candidates no rule rejects)."""
    end, limit = params.range_max, min(params.range_limit or params.range_max, retrieved)
    while end < limit and int((passes & (rank >= params.range_min) & (rank < end)).sum()) < params.num_negatives:
        end = min(end * 2, limit)
    return end


def decide_query(
    query_id: str, rows: np.ndarray, scores: np.ndarray, positive_rows: np.ndarray, pos_score: float, params: MineParams
) -> tuple[np.ndarray, ...]:
    """Decisions for one query's retrieved candidates (rows in the index, in score order).

    Returns the found rows and scores, each one's rank (-1 for known positives), the kept mask, the reason
    codes (None for kept) and the mask of candidates inspected (known positives, and ranks in the window: below
    `range_max`, or deeper where the window grew, see `_window_end`).
    """
    found = rows >= 0
    rows, scores = rows[found], scores[found]
    known = np.isin(rows, positive_rows)
    rank = np.full(len(rows), -1, dtype=np.int32)
    rank[~known] = np.arange(int((~known).sum()), dtype=np.int32)
    reasons = score_rule_reasons(scores, pos_score, params)
    end = _window_end(rank, ~known & (reasons == None), int((~known).sum()), params)  # noqa: E711
    inspected = known | (rank < end)
    reasons[known] = KNOWN_POSITIVE
    below = ~known & (rank < params.range_min)
    reasons[below & (reasons == None)] = BELOW_RANGE_MIN  # noqa: E711
    in_window = ~known & (rank >= params.range_min) & (rank < end)
    valid = np.flatnonzero(in_window & (reasons == None))  # noqa: E711
    kept = np.zeros(len(rows), dtype=bool)
    kept[select(valid, query_id, params)] = True
    reasons[in_window & (reasons == None) & ~kept] = NOT_SAMPLED  # noqa: E711
    return rows, scores, rank, kept, reasons, inspected


class MineBatch:
    """Actor body: holds the index; turns a table of queries into their inspected candidates.

    `index_sources` are the index's files (its shards, in row order): their paths (memory-mapped) or their bytes
    (where the files are not on this node).
    """

    def __init__(self, index_sources: list[str | np.ndarray], doc_ids: pa.Array, params: MineParams):
        self.index = sharded.Searcher(index_sources, gpu=params.gpus_per_actor > 0)
        self.doc_ids = doc_ids
        self.params = params

    def __call__(self, batch: pa.Table) -> pa.Table:
        """batch: query_id, vector, pos_score, positive_rows (index rows of the query's known positives)."""
        vectors = np.ascontiguousarray(vectors_matrix(batch.column("vector")))
        positive_rows = [np.asarray(p, dtype=np.int64) for p in batch.column("positive_rows").to_pylist()]
        query_ids, pos_scores = batch.column("query_id").to_pylist(), batch.column("pos_score").to_pylist()
        most = max(len(p) for p in positive_rows)
        depth = min(self.params.range_max + most, self.index.ntotal)
        found = self._search(vectors, depth)
        decided = [
            decide_query(q, rows, scores, p, s, self.params)
            for q, (scores, rows), p, s in zip(query_ids, found, positive_rows, pos_scores)
        ]
        # Queries short of negatives, whose search did not reach the corpus's end, search again deeper, so that
        # their window can grow to `range_limit`.
        deep = self.params.range_limit or 0
        short = [i for i, d in enumerate(decided) if d[3].sum() < self.params.num_negatives and len(d[0]) == depth]
        if short and deep > self.params.range_max and depth < self.index.ntotal:
            for i, (scores, rows) in zip(short, self._search(vectors[short], deep + most)):
                decided[i] = decide_query(query_ids[i], rows, scores, positive_rows[i], pos_scores[i], self.params)
        columns = {name: [] for name in schema.CANDIDATES.names if name != "doc_id"}
        doc_rows = []
        for query_id, pos_score, (rows, scores, rank, kept, reasons, inspected) in zip(query_ids, pos_scores, decided):
            n = int(inspected.sum())
            columns["query_id"].extend([query_id] * n)
            doc_rows.append(rows[inspected])
            columns["rank"].extend(np.where(rank[inspected] >= 0, rank[inspected], None))
            columns["score"].extend(scores[inspected])
            columns["pos_score"].extend([pos_score] * n)
            columns["decision"].extend(np.where(kept[inspected], KEPT, REJECTED))
            columns["reason"].extend(reasons[inspected])
        columns["doc_id"] = self.doc_ids.take(np.concatenate(doc_rows))
        return pa.table(columns, schema=schema.CANDIDATES)

    def _search(self, vectors: np.ndarray, depth: int) -> list[tuple[np.ndarray, np.ndarray]]:
        scores, rows = self.index.search(vectors, depth)
        return list(zip(scores, rows))


def negatives(candidates: pa.Table, doc_topics: pa.Table | None) -> pa.Table:
    """The kept candidates, with the topic of each negative document (`doc_topics`: id, topic; None: no topics)."""
    kept = candidates.filter(pc.equal(candidates.column("decision"), KEPT))
    if doc_topics is None:
        topic = pa.nulls(kept.num_rows, pa.int32())
    else:
        topic = doc_topics["topic"].take(pc.index_in(kept["doc_id"], doc_topics["id"]))
    return pa.table(
        {
            "query_id": kept.column("query_id"),
            "doc_id": kept.column("doc_id"),
            "rank": kept.column("rank"),
            "score": kept.column("score"),
            "pos_score": kept.column("pos_score"),
            "topic": topic.cast(pa.int32()),
        },
        schema=schema.NEGATIVES,
    )


def _positive_vectors(embeddings: Path, doc_ids: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(ids, vectors) of the given documents, streamed from the corpus embeddings rather than read whole."""
    found = [
        batch.filter(pc.is_in(batch["id"], doc_ids))
        for batch in artifacts.iter_batches(embeddings / "corpus", 65_536, ["id", "vector"])
    ]
    table = pa.concat_tables(found)
    return table["id"], vectors_matrix(table["vector"])


def query_table(pairs: Path, embeddings: Path, doc_ids: pa.Array) -> tuple[pa.Table, pa.Table]:
    """Queries in the pairs' order with their vector, known positives' index rows (`doc_ids`: row -> doc id) and
    hardest positive's score; and every (query, positive) pair with its score.

    Holds the query vectors and the positives' vectors, never the whole corpus's: the index stage is the one
    that needs every corpus vector.
    """
    positives = artifacts.read(pairs / "positives", ["query_id", "doc_id"])
    order = artifacts.read(pairs / "queries", ["query_id"])["query_id"]
    queries = artifacts.read(embeddings / "queries")
    query_vectors = vectors_matrix(queries["vector"])
    positive_ids, positive_matrix = _positive_vectors(embeddings, pc.unique(positives["doc_id"]))
    query_at = pc.index_in(positives["query_id"], queries["id"]).to_numpy()
    doc_at = pc.index_in(positives["doc_id"], positive_ids).to_numpy()
    similarity = np.array([np.dot(query_vectors[q], positive_matrix[d]) for q, d in zip(query_at, doc_at)])
    positive_scores = pa.table(
        {"query_id": positives["query_id"], "doc_id": positives["doc_id"], "score": pa.array(similarity, pa.float32())}
    )
    per_query = (
        pa.table(
            {
                "query_id": positives["query_id"],
                "row": pc.index_in(positives["doc_id"], doc_ids).cast(pa.int64()),
                "score": similarity,
            }
        )
        .group_by("query_id", use_threads=False)  # keeps each query's positives in qrels order
        .aggregate([("row", "list"), ("score", "min")])
    )
    at = pc.index_in(order, per_query["query_id"])
    table = pa.table(
        {
            "query_id": order,
            "vector": schema.vectors_column(query_vectors[pc.index_in(order, queries["id"]).to_numpy()]),
            "pos_score": per_query["score_min"].take(at).cast(pa.float32()),
            "positive_rows": per_query["row_list"].take(at),
        }
    )
    return table, positive_scores


def search(queries: pa.Table, index_files: list[Path], doc_ids: pa.Array, params: MineParams) -> Iterator[pa.Table]:
    """Every inspected candidate of `queries` (from `query_table`), a table per task, in query order: actors
    holding the index (all its shards) search their share of the queries, or, with `shard_actors`, send them to
    search actors that each hold one shard and merge what those find.

    Actors memory-map the index files where they can reach them and get the document ids from the object store: at
    1M documents, unpickling both into every actor cost several GB.
    """
    gpus = params.gpus_per_actor
    if params.shard_actors:
        servers = runtime.Resources(params.shard_actors, 1, gpus)
        server_args = {"gpu": gpus > 0}
        paths = [str(path.resolve()) for path in index_files]
        sources = runtime.ShardServers(paths, sharded.ShardSearch, server_args, params.shard_actors, servers)
        # the search actors hold the CPUs (and GPUs); the mining actors merge and decide
        miners = runtime.Resources(params.actors or params.shard_actors * len(index_files), 0, 0)
    else:
        sources, miners = runtime.files_for_workers(index_files), runtime.Resources(params.actors, 1, gpus)
    args = {"index_sources": sources, "doc_ids": runtime.share(doc_ids), "params": params}
    return work.stream(work.Work(MineBatch, args, miners, params.query_batch_size), queries)


def rejections(candidates: pa.Table) -> pa.Table:
    """The ledger's rows for the rejected candidates, with the scores that decided them."""
    rejected = candidates.filter(pc.equal(candidates["decision"], REJECTED))
    return ledger.entries("mine", "candidate", rejected, ("score", "pos_score", "rank"))


def outcomes(candidates: pa.Table) -> collections.Counter:
    """How many candidates were kept, and how many were rejected for each reason."""
    return collections.Counter(pc.fill_null(candidates["reason"], KEPT).to_pylist())


def _counts(reasons: list[str | None]) -> str:
    counted = collections.Counter(r for r in reasons if r is not None)
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counted.items(), key=lambda item: (-item[1], item[0])))


def short_queries(candidates: pa.Table, params: MineParams) -> pa.Table:
    """The queries of `candidates` (whole queries, in order) with fewer than `num_negatives` kept: how many they
    kept, how deep their window went, why (`corpus_exhausted` where the corpus held fewer candidates than the
    window's bound, `window_exhausted` where every candidate up to it was rejected or not sampled), and what
    rejected the candidates inspected."""
    kept, depth, reasons = collections.Counter(), collections.Counter(), collections.defaultdict(list)
    for query_id, rank, decision, reason in zip(
        *(candidates[c].to_pylist() for c in ("query_id", "rank", "decision", "reason"))
    ):
        kept[query_id] += decision == KEPT
        depth[query_id] += rank is not None
        reasons[query_id].append(reason)
    bound = params.range_limit or params.range_max
    short = [q for q in reasons if kept[q] < params.num_negatives]
    return pa.table(
        {
            "query_id": short,
            "negatives": [kept[q] for q in short],
            "depth": [depth[q] for q in short],
            "reason": [CORPUS_EXHAUSTED if depth[q] < bound else WINDOW_EXHAUSTED for q in short],
            "detail": [_counts(reasons[q]) for q in short],
        },
        schema=schema.SHORT_QUERIES,
    )


def without_candidates(query_ids: list[str]) -> pa.Table:
    """Short-query rows for queries the index gave no candidate at all (every document is one of their positives)."""
    return pa.table(
        {
            "query_id": query_ids,
            "negatives": [0] * len(query_ids),
            "depth": [0] * len(query_ids),
            "reason": [CORPUS_EXHAUSTED] * len(query_ids),
            "detail": ["no candidate: every document retrieved is a positive"] * len(query_ids),
        },
        schema=schema.SHORT_QUERIES,
    )
