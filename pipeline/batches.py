"""Batch construction: which rows a trainer that reads the export in order sees together in one batch.

With in-batch negatives (MultipleNegativesRankingLoss and kin), every other row's positive and negatives are a
row's negatives too, so the batches decide how hard, and how false, most of the negatives are:
- `random`: rows in a seeded random order;
- `topic` (TAS-style): each batch drawn from one k-means cluster of the queries, so in-batch negatives share a
  topic (a cluster's remainder is packed with other clusters' remainders at the end);
- `b3` (B3-style): a sparse graph joins two queries when the teacher ranks one's positive among the other's top
  candidates (past the first `skip` ranks, likely false negatives); METIS cuts it into small communities, and each
  batch is filled from a few communities, so in-batch negatives are ones the teacher found hard.
Every method but `none` (ingest order, cut every batch_size rows) fills batches greedily under the same rules:
two rows with the same positive document never share a batch, and a row is kept out of a batch where a known
positive of one row would be another's in-batch negative, unless no batch of its group can take it (then it opens
a new one). Conflicts that remain are counted.
Full batches go out in a seeded random order, so a trainer does not walk through one topic after another; the
partial ones (rows no full batch could take, e.g. many edits of one positive) go last. Reading the rows in order
with the same batch size gives exactly the full batches; `pipeline.training.export_batches` gives all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class _Batch:
    rows: list[int] = field(default_factory=list)
    positives: set[str] = field(default_factory=set)
    documents: set[str] = field(default_factory=set)  # positives and negatives of its rows
    known: set[str] = field(default_factory=set)  # known positives of its rows' queries


@dataclass(frozen=True)
class Rows:
    """What batching needs of each export row: its query, positive document, negative documents, and the
    known positives of its query."""

    query_ids: list[str]
    positive_ids: list[str]
    negative_ids: list[list[str]]
    known: dict[str, set[str]]

    def fits(self, row: int, batch: _Batch) -> bool:
        positive = self.positive_ids[row]
        if positive in batch.positives:
            return False
        mine = {positive, *self.negative_ids[row]}
        return not (mine & batch.known or batch.documents & self.known.get(self.query_ids[row], set()))

    def add(self, row: int, batch: _Batch) -> None:
        batch.rows.append(row)
        batch.positives.add(self.positive_ids[row])
        batch.documents.update([self.positive_ids[row], *self.negative_ids[row]])
        batch.known.update(self.known.get(self.query_ids[row], set()))


def _fill(rows: Rows, order: list[int], batch_size: int) -> tuple[list[_Batch], list[_Batch]]:
    """Place rows in order into the first open batch they fit; returns (full batches, partial ones)."""
    full, open_ = [], []
    for row in order:
        target = next((b for b in open_ if rows.fits(row, b)), None)
        if target is None:
            target = _Batch()
            open_.append(target)
        rows.add(row, target)
        if len(target.rows) == batch_size:
            open_.remove(target)
            full.append(target)
    return full, open_


def assign(rows: Rows, groups: np.ndarray, batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Batches of rows from one group each (remainders packed together last); returns each row's `batch_id` and
    the row order to write (batch by batch, in batch-id order)."""
    rng = np.random.default_rng(seed)
    shuffled = rng.permutation(len(rows.query_ids))
    batches, remainder = [], []
    for group in np.unique(groups):
        full, partial = _fill(rows, shuffled[groups[shuffled] == group].tolist(), batch_size)
        batches += full
        remainder += [r for b in partial for r in b.rows]
    position = np.empty(len(shuffled), np.int64)
    position[shuffled] = np.arange(len(shuffled))
    full, partial = _fill(rows, sorted(remainder, key=position.__getitem__), batch_size)
    batches += full
    # Full batches in a seeded random order, partial ones last: a trainer reading rows in order with the same
    # batch size then gets exactly these batches.
    ordered = [batches[i] for i in rng.permutation(len(batches))] + partial
    batch_id = np.empty(len(rows.query_ids), np.int64)
    for new_id, batch in enumerate(ordered):
        batch_id[batch.rows] = new_id
    return batch_id, np.array([r for batch in ordered for r in batch.rows], np.int64)


def conflicts(rows: Rows, batch_id: np.ndarray) -> dict[str, int]:
    """Per plan: rows sharing a batch with the same positive document, and (row, in-batch negative) pairs where
    the negative is a known positive of the row's query."""
    same_positive = false_negatives = 0
    for members in _members(batch_id):
        positives = [rows.positive_ids[r] for r in members]
        same_positive += len(positives) - len(set(positives))
        for r in members:
            known = rows.known.get(rows.query_ids[r], set())
            others = {d for o in members if o != r for d in (rows.positive_ids[o], *rows.negative_ids[o])}
            false_negatives += len(others & known)
    return {"same_positive": same_positive, "false_in_batch_negatives": false_negatives}


def _members(batch_id: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(batch_id, kind="stable")
    cuts = np.flatnonzero(np.diff(batch_id[order])) + 1
    return np.split(order, cuts)


def plan(
    table: pa.Table, rows: Rows | None, method: str, batch_size: int, seed: int, query_group: dict[str, int] | None
) -> tuple[pa.Table, dict[str, int]]:
    """`table` written batch by batch with its `batch_id` column, and the plan's figures (batches, conflicts).

    `rows` None: a format not trained with in-batch negatives, returned as it is. `none` keeps the row order and
    cuts it into batches, counting (not avoiding) conflicts; `query_group` holds b3's groups.
    """
    if rows is None:
        return table, {}
    if method == "none":
        batch_id, order = np.arange(table.num_rows) // batch_size, np.arange(table.num_rows)
    else:
        if method == "topic":
            groups = np.array(pc.fill_null(table["topic"], -1).to_pylist(), np.int64)
        elif method == "b3":
            groups = np.array([query_group.get(q, -1) for q in rows.query_ids], np.int64)
        else:
            groups = np.zeros(table.num_rows, np.int64)
        batch_id, order = assign(rows, groups, batch_size, seed)
    figures = {"batches": int(batch_id.max()) + 1 if table.num_rows else 0, **conflicts(rows, batch_id)}
    return table.take(order).append_column("batch_id", pa.array(batch_id[order], pa.int64())), figures


def documents_by_query(table: pa.Table) -> dict[str, list[str]]:
    """Each query's doc_ids, in table order, from (query_id, doc_id) rows."""
    found: dict[str, list[str]] = {}
    for query_id, doc_id in zip(table["query_id"].to_pylist(), table["doc_id"].to_pylist()):
        found.setdefault(query_id, []).append(doc_id)
    return found


def b3_query_groups(
    ranks: pa.Table,
    positives: pa.Table,
    skip: int,
    window: int,
    community_size: int,
    communities_per_batch: int,
    seed: int,
) -> dict[str, int]:
    """Per query, its group: a bundle of `communities_per_batch` METIS communities of about `community_size`
    queries, from the graph joining query a to b when one of b's positives is in a's teacher ranks
    [skip, skip + window). `ranks`: (query_id, doc_id, rank) of the teacher's candidates (rank null: a known
    positive); `positives`: (query_id, doc_id)."""
    import pymetis

    ranks = ranks.filter(pc.is_valid(ranks["rank"])).sort_by([("query_id", "ascending"), ("rank", "ascending")])
    ranked = documents_by_query(ranks)
    positives_of = documents_by_query(positives)
    query_ids = list(positives_of)
    at = {q: i for i, q in enumerate(query_ids)}
    owners: dict[str, list[int]] = {}
    for query, docs in positives_of.items():
        for doc in docs:
            owners.setdefault(doc, []).append(at[query])
    neighbours: list[set[int]] = [set() for _ in query_ids]
    for query, docs in ranked.items():
        a = at.get(query)
        if a is None:
            continue
        for doc in docs[skip : skip + window]:
            for b in owners.get(doc, []):
                if b != a:
                    neighbours[a].add(b)
                    neighbours[b].add(a)
    parts = max(1, round(len(query_ids) / community_size))
    if parts == 1:
        community = np.zeros(len(query_ids), np.int64)
    else:
        options = pymetis.Options(seed=seed)
        _, membership = pymetis.part_graph(parts, adjacency=[sorted(n) for n in neighbours], options=options)
        community = np.asarray(membership, np.int64)
    bundles = np.random.default_rng(seed).permutation(parts) // communities_per_batch
    return dict(zip(query_ids, bundles[community].tolist()))
