"""The false-negative rate of a dataset's own negatives, measured on the dataset: the hidden-positive protocol.

Queries with several judged positives keep their first (in qrels order) and hide the others. Their candidates are
decided again from the mine stage's artifact as if the hidden positives were unlabelled (the same window, score
rules and sampling; the margins against the kept positive), then pass through the same near-duplicate rules,
judges and refill as every negative. A hidden positive that comes out as a kept negative is a false negative the
pipeline would have shipped: the share of kept negatives that are hidden positives, with a bootstrap interval over
queries, is the rate the metrics and the dataset card report, beside the hardness paid for it (mean score and
rank of the kept negatives) and the queries left short.

The candidates needed are all in the mine artifact: it records every known positive it met (with its score) and
every candidate up to `range_max`, and a window that now counts the hidden positives as candidates reaches no
deeper than that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import mine, schema
from pairforge.pipeline.params import MineParams
from pairforge.pipeline.vocabulary import KEPT, REJECTED

# Fewer queries with a hidden positive than this give no rate, only the count: an interval over a handful of
# queries says nothing a user could act on.
MIN_QUERIES = 20
BOOTSTRAP_DRAWS = 1000


@dataclass(frozen=True)
class Sample:
    """The calibration queries: `known` holds the positives they keep (positives' columns), `hidden` the others."""

    known: pa.Table
    hidden: dict[str, set[str]]

    @property
    def query_ids(self) -> pa.Array:
        return pa.array(sorted(self.hidden), pa.string())


def sample(positives: pa.Table) -> Sample:
    """Every query with two or more positives: its first positive kept, the others hidden."""
    first: dict[str, str] = {}
    hidden: dict[str, set[str]] = {}
    for query_id, doc_id in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()):
        if query_id not in first:
            first[query_id] = doc_id
        elif doc_id != first[query_id]:
            hidden.setdefault(query_id, set()).add(doc_id)
    known = pa.table({"query_id": pa.array(sorted(hidden), pa.string()), "doc_id": [first[q] for q in sorted(hidden)]})
    return Sample(known, hidden)


def _queries(candidates: pa.Table):
    """Each query's rows of `candidates`, whose queries come in contiguous runs (as the mine stage writes them)."""
    ids = candidates["query_id"].combine_chunks()
    changes = np.flatnonzero(pc.not_equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False)) + 1
    bounds = [0, *changes.tolist(), len(ids)] if len(ids) else []
    for start, end in zip(bounds[:-1], bounds[1:]):
        yield candidates.slice(start, end - start)


def redecide(candidates: pa.Table, known: pa.Table, positive_scores: pa.Table, params: MineParams) -> pa.Table:
    """The mine stage's decisions for these queries' candidates (whole queries, in mine's retrieval order) as if
    only `known` were their positives: a hidden positive becomes a candidate at its retrieval rank."""
    known_docs: dict[str, set[str]] = {}
    for query_id, doc_id in zip(known["query_id"].to_pylist(), known["doc_id"].to_pylist()):
        known_docs.setdefault(query_id, set()).add(doc_id)
    score_of = {
        (q, d): s
        for q, d, s in zip(*(positive_scores[c].to_pylist() for c in ("query_id", "doc_id", "score")))
        if d in known_docs.get(q, ())
    }
    decided = []
    for rows in _queries(candidates):
        query_id = rows["query_id"][0].as_py()
        doc_ids, scores = rows["doc_id"].to_pylist(), rows["score"].to_numpy(zero_copy_only=False)
        positives = np.array([i for i, d in enumerate(doc_ids) if d in known_docs[query_id]], np.int64)
        pos_score = min(score_of[(query_id, d)] for d in known_docs[query_id])
        found, found_scores, rank, kept, reasons, inspected = mine.decide_query(
            query_id, np.arange(len(doc_ids)), scores, positives, pos_score, params
        )
        decided.append(
            pa.table(
                {
                    "query_id": [query_id] * int(inspected.sum()),
                    "doc_id": [doc_ids[i] for i in found[inspected]],
                    "rank": pa.array(np.where(rank[inspected] >= 0, rank[inspected], None), pa.int32()),
                    "score": pa.array(found_scores[inspected], pa.float32()),
                    "pos_score": pa.array([pos_score] * int(inspected.sum()), pa.float32()),
                    "decision": pa.array(np.where(kept[inspected], KEPT, REJECTED)),
                    "reason": pa.array(reasons[inspected].tolist(), pa.string()),
                },
                schema=schema.CANDIDATES,
            )
        )
    return pa.concat_tables(decided) if decided else schema.CANDIDATES.empty_table()


def per_query(judged: pa.Table, hidden: dict[str, set[str]]) -> dict[str, tuple[int, int]]:
    """Per calibration query: (false negatives, negatives kept)."""
    counts = {query_id: [0, 0] for query_id in hidden}
    kept = judged.filter(pc.equal(judged["decision"], KEPT))
    for query_id, doc_id in zip(kept["query_id"].to_pylist(), kept["doc_id"].to_pylist()):
        if query_id in counts:  # other queries' negatives have nothing hidden to find
            counts[query_id][0] += doc_id in hidden[query_id]
            counts[query_id][1] += 1
    return {q: (fn, n) for q, (fn, n) in counts.items()}


def interval(counts: list[tuple[int, int]], seed: int, draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """95% percentile bootstrap interval of the pooled rate (sum of false negatives / sum of negatives), drawing
    whole queries with replacement: a query's negatives are not independent of each other."""
    fn, n = (np.array(column, dtype=np.float64) for column in zip(*counts))
    picks = np.random.default_rng(seed).integers(0, len(counts), size=(draws, len(counts)))
    totals = n[picks].sum(axis=1)
    rates = np.divide(fn[picks].sum(axis=1), totals, out=np.zeros(draws), where=totals > 0)
    low, high = np.quantile(rates, [0.025, 0.975])
    return float(low), float(high)


def measure(judged: pa.Table, hidden: dict[str, set[str]], num_negatives: int, seed: int) -> dict:
    """The false-negative rate of `judged` (the calibration queries' filter output), its interval, the hardness
    of the kept negatives (mean score and rank), and the queries short of `num_negatives`."""
    counts = per_query(judged, hidden)
    kept = judged.filter(pc.equal(judged["decision"], KEPT))
    report = {
        "queries": len(hidden),
        "hidden_positives": sum(len(docs) for docs in hidden.values()),
        "negatives": kept.num_rows,
        "false_negatives": sum(fn for fn, _ in counts.values()),
        "queries_short": sum(n < num_negatives for _, n in counts.values()),
    }
    if kept.num_rows:
        report["mean_score"] = round(float(pc.mean(kept["score"]).as_py()), 4)
        report["mean_rank"] = round(float(pc.mean(kept["rank"]).as_py()), 2)
    if len(hidden) < MIN_QUERIES or not kept.num_rows:
        report["rate"] = None
        report["why_no_rate"] = (
            f"{len(hidden)} queries with two or more judged positives; {MIN_QUERIES} are needed to measure the rate"
        )
        return report
    report["rate"] = round(report["false_negatives"] / report["negatives"], 4)
    report["interval"] = [round(bound, 4) for bound in interval(list(counts.values()), seed)]
    return report


def flagged(judged: pa.Table, hidden: dict[str, set[str]]) -> pa.Table:
    """`judged` with `hidden_positive`: whether the row's document is one of its query's hidden positives."""
    flags = [d in hidden.get(q, ()) for q, d in zip(judged["query_id"].to_pylist(), judged["doc_id"].to_pylist())]
    return judged.append_column("hidden_positive", pa.array(flags, pa.bool_()))


def summary(report: dict) -> str:
    """The filter's log line on the measured false-negative rate (the card and the manifest say the rest)."""
    if report["rate"] is None:
        return f"not measured: {report['why_no_rate']}"
    low, high = report["interval"]
    return (
        f"{report['rate']:.1%} of {report['negatives']} kept negatives (95% interval {low:.1%} to {high:.1%}), "
        f"{report['queries']} queries with {report['hidden_positives']} hidden positives"
    )
