"""Batch construction on small hand-made rows (the stage's use: tests/test_export.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pairforge.pipeline import batches


def make_rows(queries: int, per_query: int = 1, shared_positive_every: int = 0) -> batches.Rows:
    """Rows (query, positive, 2 negatives): query q's positive is d{q}, or a shared one for every k-th query."""
    query_ids, positive_ids, negative_ids, known = [], [], [], {}
    for q in range(queries):
        positive = "shared" if shared_positive_every and q % shared_positive_every == 0 else f"d{q}"
        known[f"q{q}"] = {positive}
        for r in range(per_query):
            query_ids.append(f"q{q}")
            positive_ids.append(positive)
            # Each query's negatives include the next query's positive: a false in-batch negative waiting to happen.
            negative_ids.append([f"d{q + 1}", f"n{q}-{r}"])
    return batches.Rows(query_ids, positive_ids, negative_ids, known)


def members(batch_id: np.ndarray) -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for row, batch in enumerate(batch_id.tolist()):
        found.setdefault(batch, []).append(row)
    return found


def test_batches_avoid_shared_positives_and_known_positives_as_in_batch_negatives():
    rows = make_rows(200, per_query=3, shared_positive_every=10)
    groups = np.array([int(q[1:]) % 4 for q in rows.query_ids])
    batch_id, order = batches.assign(rows, groups, batch_size=16, seed=7)
    assert sorted(order.tolist()) == list(range(600)), "every row once"
    assert (np.diff(batch_id[order]) >= 0).all(), "rows are written batch by batch"
    sizes = [len(m) for m in members(batch_id).values()]
    full = sum(1 for s in sizes if s == 16)
    last_full = max(b for b, m in members(batch_id).items() if len(m) == 16)
    assert all(len(members(batch_id)[b]) == 16 for b in range(last_full + 1)), "partial batches come last"
    assert full >= 600 // 16 - 4
    assert batches.conflicts(rows, batch_id) == {"same_positive": 0, "false_in_batch_negatives": 0}
    single_group = sum(1 for m in members(batch_id).values() if len({groups[r] for r in m}) == 1)
    assert single_group >= len(sizes) - 2 * 4, "batches come from one group, but for the packed remainders"
    again = batches.assign(rows, groups, batch_size=16, seed=7)
    assert np.array_equal(again[0], batch_id) and np.array_equal(again[1], order), "seeded: same plan"
    assert not np.array_equal(batches.assign(rows, groups, 16, seed=8)[1], order)


def test_cutting_rows_in_order_counts_the_conflicts_that_assign_avoids():
    rows = make_rows(64, per_query=2)
    naive = np.arange(128) // 16  # what a trainer reading in ingest order gets
    found = batches.conflicts(rows, naive)
    assert found["same_positive"] == 64, "each query's two rows share their positive"
    assert found["false_in_batch_negatives"] > 0
    table = pa.table({"query_id": rows.query_ids, "topic": [0] * 128})
    planned, figures = batches.plan(table, rows, "random", 16, seed=1, query_group=None)
    assert figures["same_positive"] == figures["false_in_batch_negatives"] == 0
    assert planned["batch_id"].to_pylist() == sorted(planned["batch_id"].to_pylist())
    _, as_is = batches.plan(table, rows, "none", 16, seed=1, query_group=None)
    assert as_is == {"batches": 8, **found}


def test_b3_groups_follow_the_teachers_rank_graph_and_skip_its_top_ranks():
    # Two worlds of 8 queries: each query's teacher ranks put the other queries' positives of its own world
    # after rank 1; rank 0 holds a positive of the other world (a likely false negative, skipped).
    ranks = {"query_id": [], "doc_id": [], "rank": []}
    for q in range(16):
        world = range(0, 8) if q < 8 else range(8, 16)
        ranked = [f"d{(q + 8) % 16}"] + [f"d{o}" for o in world if o != q]
        for rank, doc in enumerate(ranked):
            ranks["query_id"].append(f"q{q}")
            ranks["doc_id"].append(doc)
            ranks["rank"].append(rank)
    positives = pa.table({"query_id": [f"q{q}" for q in range(16)], "doc_id": [f"d{q}" for q in range(16)]})
    groups = batches.b3_query_groups(pa.table(ranks), positives, 1, 10, 8, 1, seed=3)
    assert len({groups[f"q{q}"] for q in range(8)}) == 1 and len({groups[f"q{q}"] for q in range(8, 16)}) == 1
    assert groups["q0"] != groups["q8"]
    cross = batches.b3_query_groups(pa.table(ranks), positives, 0, 1, 8, 1, seed=3)  # only the rank-0 links
    assert cross["q0"] == cross["q8"], "without the skip, the top-rank links join the two worlds"
