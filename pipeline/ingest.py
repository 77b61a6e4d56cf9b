"""Ingest: the user's corpora (BEIR folders, pair files, Hugging Face datasets) into corpus / queries / positives.

Records are read and checked by `pipeline.records`; this module turns them into the three tables, collapsing
duplicate texts and resolving the qrels' ids.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pairforge.pipeline import artifacts, hf_datasets, schema, vocabulary
from pairforge.pipeline.params import IngestParams
from pairforge.pipeline.records import FORMATS, BadRows, each_row, field, read_records, rows
from pairforge.pipeline.schema import InputError

FLOAT32_MAX = 3.4028234663852886e38


def stable_id(prefix: str, text: str) -> str:
    return f"{prefix}{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@dataclass
class Collection:
    """Ids -> texts, with exact duplicate texts collapsed to the first id that carried them."""

    kind: str
    texts: dict[str, str]
    titles: dict[str, str | None]
    by_text: dict[str, str]
    merged: dict[str, str]  # duplicate id -> kept id

    @classmethod
    def empty(cls, kind: str) -> Collection:
        return cls(kind, {}, {}, {}, {})

    def add(self, id_: str, text: str, title: str | None, source: Path, row: int, id_field: str) -> str:
        if id_ in self.texts or id_ in self.merged:
            known = self.texts.get(id_, None) or self.texts[self.merged[id_]]
            if known != text:
                raise InputError(source, row, id_field, f"duplicate id {id_!r} with a different text")
            return self.merged.get(id_, id_)
        if text in self.by_text:
            self.merged[id_] = self.by_text[text]
            return self.by_text[text]
        self.texts[id_], self.titles[id_], self.by_text[text] = text, title, id_
        return id_

    def canonical(self, id_: str) -> str | None:
        return id_ if id_ in self.texts else self.merged.get(id_)

    def rejections(self) -> pa.Table:
        keys = sorted(self.merged)
        return pa.table(
            {
                "stage": ["ingest"] * len(keys),
                "kind": [self.kind] * len(keys),
                "key": keys,
                "reason": [vocabulary.DUPLICATE_TEXT] * len(keys),
                "detail": [f"same text as {self.merged[k]}" for k in keys],
                "scores": [[] for _ in keys],
            },
            schema=schema.REJECTIONS,
        )


# A title that already ends a clause ("Title.", "Why?") drops the separator's own leading punctuation:
# "Title. Text", never "Title.. Text" (3,012 of SciFact's 5,183 titles end in a period).
CLAUSE_END = ".!?:;,…。！？"


def _joined(text: str, title: str | None, separator: str | None) -> str:
    if not title or separator is None:
        return text
    if title.rstrip().endswith(tuple(CLAUSE_END)):
        return f"{title.rstrip()}{separator.lstrip(CLAUSE_END) or ' '}{text}"
    return f"{title}{separator}{text}"


def _find(folder: Path, stem: str) -> Path:
    if not folder.is_dir():
        problem = "not found" if not folder.exists() else "is a file, and format beir reads a folder"
        raise InputError(
            folder, None, None,
            f"{problem} (corpus.*, queries.* and qrels/<split>.*); for a file of pairs set ingest.format: pairs "
            "and ingest.anchor_column / ingest.positive_column",
        )  # fmt: skip
    for suffix in FORMATS:
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    found = sorted(child.name + ("/" if child.is_dir() else "") for child in folder.iterdir())
    raise InputError(
        folder / f"{stem}.jsonl", None, None,
        f"file not found: format beir looks for {stem}.* ({', '.join(FORMATS)}) in {folder}, which holds "
        f"{', '.join(found[:20]) or 'nothing'}",
    )  # fmt: skip


Source = tuple[Collection, Collection, list[tuple[str, str, float]]]


def _score(record: dict, path: Path, row: int) -> float:
    try:
        score = float(record.get("score", 1))
    except (TypeError, ValueError, OverflowError):
        score = math.nan
    if not math.isfinite(score) or abs(score) > FLOAT32_MAX:  # scores are kept as float32
        raise InputError(path, row, "score", f"expected a finite number, found {record.get('score')!r}")
    return score


def read_beir(params: IngestParams, bad_rows: BadRows | None) -> Source:
    folder = Path(params.source)
    corpus = Collection.empty("doc")
    corpus_path = _find(folder, "corpus")
    for row, record in read_records(corpus_path, bad_rows):
        with each_row(bad_rows):
            id_ = field(record, "_id", corpus_path, row)
            text = field(record, "text", corpus_path, row)
            title = field(record, "title", corpus_path, row, required=False) or None
            corpus.add(id_, _joined(text, title, params.title_separator), title, corpus_path, row, "_id")
    queries = Collection.empty("query")
    if params.split is None:  # the corpus alone: queries come from the pairs stage
        return corpus, queries, []
    queries_path = _find(folder, "queries")
    for row, record in read_records(queries_path, bad_rows):
        with each_row(bad_rows):
            id_, text = field(record, "_id", queries_path, row), field(record, "text", queries_path, row)
            queries.add(id_, text, None, queries_path, row, "_id")
    qrels_path = _find(folder / "qrels", params.split)
    positives = []
    for row, record in read_records(qrels_path, bad_rows):
        with each_row(bad_rows):
            query_id = queries.canonical(field(record, "query-id", qrels_path, row))
            if query_id is None:
                raise InputError(qrels_path, row, "query-id", f"unknown query {record['query-id']!r}")
            doc_id = corpus.canonical(field(record, "corpus-id", qrels_path, row))
            if doc_id is None:
                raise InputError(qrels_path, row, "corpus-id", f"unknown document {record['corpus-id']!r}")
            score = _score(record, qrels_path, row)
            if score > 0:
                positives.append((query_id, doc_id, score))
    return corpus, queries, positives


def read_pairs(params: IngestParams, bad_rows: BadRows | None) -> Source:
    path = Path(params.source)
    corpus, queries = Collection.empty("doc"), Collection.empty("query")
    positives = []
    columns = {name: f"ingest.{name}_column" for name in ("anchor", "positive", "negative")}
    for row, record in rows(params.source, params.split, params.subset, bad_rows):
        with each_row(bad_rows):  # every field is checked before anything is added: a skipped row leaves no trace
            anchor = field(record, params.anchor_column, path, row, param=columns["anchor"])
            positive = field(record, params.positive_column, path, row, param=columns["positive"])
            negative = None
            if params.negative_column:
                negative = field(record, params.negative_column, path, row, param=columns["negative"])
            query_id = queries.add(stable_id("q", anchor), anchor, None, path, row, params.anchor_column)
            doc_id = corpus.add(stable_id("d", positive), positive, None, path, row, params.positive_column)
            positives.append((query_id, doc_id, 1.0))
            if negative is not None:
                corpus.add(stable_id("d", negative), negative, None, path, row, params.negative_column)
    return corpus, queries, positives


def read_corpus(params: IngestParams, bad_rows: BadRows | None) -> Source:
    """Documents alone (`ingest.format: corpus`), for queries the pairs stage writes: no query, no judged pair."""
    corpus = Collection.empty("doc")
    add_unlabelled(corpus, params, bad_rows, params.source)
    return corpus, Collection.empty("query"), []


def add_unlabelled(corpus: Collection, params: IngestParams, bad_rows: BadRows | None, source: str) -> None:
    """Documents no query is judged against (`ingest.corpus`): more to mine negatives from."""
    path = Path(source)
    for row, record in rows(source, params.split, params.subset, bad_rows):
        with each_row(bad_rows):
            text = field(record, params.corpus_column, path, row, param="ingest.corpus_column")
            corpus.add(stable_id("d", text), text, None, path, row, params.corpus_column)


def fingerprints(params: IngestParams) -> dict[str, str]:
    """What the ingested artifact was built from: each source's content hash (a dataset's own fingerprint)."""
    found = {}
    for name in ("source", "corpus"):
        source = getattr(params, name)
        if source is not None:
            hub = str(source).startswith(hf_datasets.HUB)
            found[name] = (
                hf_datasets.fingerprint(source, params.split, params.subset) if hub else artifacts.fingerprint(source)
            )
    return found


def ingest(params: IngestParams) -> dict[str, pa.Table]:
    """Read the configured source; returns the corpus, queries, positives and rejections tables."""
    bad_rows = BadRows() if params.on_bad_row == "skip" else None
    read = {"beir": read_beir, "pairs": read_pairs, "corpus": read_corpus}[params.format]
    corpus, queries, positives = read(params, bad_rows)
    if params.corpus is not None:
        add_unlabelled(corpus, params, bad_rows, params.corpus)
    best: dict[tuple[str, str], float] = {}  # the same judgement twice (e.g. via merged ids) counts once, best score
    for query_id, doc_id, score in positives:
        best[query_id, doc_id] = max(score, best.get((query_id, doc_id), score))
    positives = [(q, d, s) for (q, d), s in best.items()]
    judged = list(dict.fromkeys(q for q, _, _ in positives))
    if params.max_queries and len(judged) > params.max_queries:
        position = {query_id: i for i, query_id in enumerate(judged)}
        judged = sorted(random.Random(params.seed).sample(judged, params.max_queries), key=position.__getitem__)
    keep = set(judged)
    query_ids = [q for q in queries.texts if q in keep]
    tables = {
        "corpus": pa.table(
            {
                "doc_id": list(corpus.texts),
                "text": list(corpus.texts.values()),
                "title": list(corpus.titles.values()),
            },
            schema=schema.CORPUS,
        ),
        "queries": pa.table(
            {"query_id": query_ids, "text": [queries.texts[q] for q in query_ids]}, schema=schema.QUERIES
        ),
        "positives": pa.table(
            {
                "query_id": [q for q, _, _ in positives if q in keep],
                "doc_id": [d for q, d, _ in positives if q in keep],
                "score": [s for q, _, s in positives if q in keep],
            },
            schema=schema.POSITIVES,
        ),
        "rejections": pa.concat_tables(
            [(bad_rows or BadRows()).rejections(), corpus.rejections(), queries.rejections()]
        ),
    }
    return tables
