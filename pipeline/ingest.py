"""Ingest: the user's corpora (BEIR folders, pair files; JSONL, CSV/TSV, Parquet) into corpus / queries / positives.

Every record is checked as it is read, so an error names the file, the line (JSONL, CSV: the physical line;
Parquet: the 1-based row) and the field. Under `on_bad_row: skip` a bad row is left out instead and kept, with its
error, in the rejections ledger (reason `bad_row`); a file that can't be read at all still stops the stage.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema, vocabulary
from pipeline.params import IngestParams
from pipeline.schema import InputError

FLOAT32_MAX = 3.4028234663852886e38
FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the default (128 KiB) rejects long documents


class BadRows(list):
    """Where rows that can't be used go under `on_bad_row: skip`; `None` in its place raises them."""

    def rejections(self) -> pa.Table:
        return pa.table(
            {
                "stage": ["ingest"] * len(self),
                "kind": ["row"] * len(self),
                "key": [f"{Path(err.source).name}:{err.row}" for err in self],
                "reason": [vocabulary.BAD_ROW] * len(self),
                "detail": [str(err) for err in self],
                "scores": [[] for _ in self],
            },
            schema=schema.REJECTIONS,
        )


def _bad(err: InputError, bad_rows: BadRows | None) -> None:
    if bad_rows is None:
        raise err
    bad_rows.append(err)


@contextlib.contextmanager
def _each_row(bad_rows: BadRows | None) -> Iterator[None]:
    """Wraps one row's checks: under `skip` a bad row is recorded and the loop goes on to the next."""
    try:
        yield
    except InputError as err:
        _bad(err, bad_rows)


def read_records(path: Path, bad_rows: BadRows | None = None) -> Iterator[tuple[int, dict]]:
    """(row number, record) pairs from a JSONL, CSV, TSV or Parquet file; unreadable rows go to `bad_rows`."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, None, None, f"unknown format {path.suffix!r}; expected one of {sorted(FORMATS)}")
    if not path.exists():
        raise InputError(path, None, None, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, None, None, "file is empty")
    if fmt == "parquet":
        yield from _parquet_records(path, bad_rows)
        return
    with open(path, "rb") as handle:
        raw_lines = handle.read().splitlines()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            _bad(InputError(path, number, None, f"not valid UTF-8 ({err.reason} at byte {err.start})"), bad_rows)
            lines.append("")  # a blank in its place keeps the physical line numbers of the rows after it
    if fmt == "jsonl":
        records = _jsonl_records(path, lines, bad_rows)
    else:
        records = _delimited_records(path, lines, "\t" if fmt == "tsv" else ",", bad_rows)
    empty = True
    for item in records:
        empty = False
        yield item
    if empty:  # blank lines only, or a CSV / TSV header without rows
        raise InputError(path, None, None, "file holds no records")


def _jsonl_records(path: Path, lines: list[str], bad_rows: BadRows | None) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _bad(InputError(path, number, None, f"malformed JSON: {err.msg} at column {err.colno}"), bad_rows)
            continue
        except ValueError as err:  # an integer of more digits than Python converts (4,300)
            _bad(InputError(path, number, None, f"malformed JSON: {err}"), bad_rows)
            continue
        except RecursionError:
            _bad(InputError(path, number, None, "malformed JSON: nested too deeply"), bad_rows)
            continue
        if not isinstance(record, dict):
            _bad(InputError(path, number, None, f"expected a JSON object, found {type(record).__name__}"), bad_rows)
            continue
        yield number, record


def _delimited_records(
    path: Path, lines: list[str], delimiter: str, bad_rows: BadRows | None
) -> Iterator[tuple[int, dict]]:
    # strict: a quote never closed is an error where its field opened, not the rest of the file merged into it
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, strict=True)
    header = next(reader, None)
    if not header:
        raise InputError(path, 1, None, "missing header row")
    while True:
        started = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputError(path, started, None, f"a quoted field opened here is never closed ({err})") from err
        number = reader.line_num
        if not values:
            continue
        if len(values) != len(header):
            problem = f"expected {len(header)} fields ({header}), found {len(values)}"
            _bad(InputError(path, number, None, problem), bad_rows)
            continue
        yield number, dict(zip(header, values))


def _parquet_records(path: Path, bad_rows: BadRows | None) -> Iterator[tuple[int, dict]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(path, None, None, f"not a readable Parquet file: {err}") from err
    if table.num_rows == 0:
        raise InputError(path, None, None, "file holds no records")
    broken = set()
    for name in table.column_names:  # Arrow trusts a file's strings; Python does not
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            for row, value in enumerate(column.cast(pa.binary()).to_pylist(), start=1):
                try:
                    value is None or value.decode("utf-8")
                except UnicodeDecodeError as err:
                    _bad(InputError(path, row, name, f"not valid UTF-8 ({err.reason} at byte {err.start})"), bad_rows)
                    broken.add(row)
    rows = [row for row in range(1, table.num_rows + 1) if row not in broken]
    yield from zip(rows, table.take([row - 1 for row in rows]).to_pylist())


def field(record: dict, name: str, source: Path, row: int, required: bool = True) -> str | None:
    """A text or id field: ids may be numbers in the file (BEIR does this), and become strings."""
    if name not in record or record[name] is None:
        if required:
            raise InputError(source, row, name, "missing field")
        return None
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(source, row, name, f"expected a string, found {type(value).__name__}")
    value = str(value)
    if required and not value.strip():
        raise InputError(source, row, name, "text is empty")
    return value


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


def _joined(text: str, title: str | None, separator: str | None) -> str:
    return f"{title}{separator}{text}" if title and separator is not None else text


def _find(folder: Path, stem: str) -> Path:
    for suffix in FORMATS:
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    raise InputError(folder / f"{stem}.jsonl", None, None, f"file not found (looked for {stem}.* in {folder})")


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
        with _each_row(bad_rows):
            id_ = field(record, "_id", corpus_path, row)
            text = field(record, "text", corpus_path, row)
            title = field(record, "title", corpus_path, row, required=False) or None
            corpus.add(id_, _joined(text, title, params.title_separator), title, corpus_path, row, "_id")
    queries = Collection.empty("query")
    queries_path = _find(folder, "queries")
    for row, record in read_records(queries_path, bad_rows):
        with _each_row(bad_rows):
            id_, text = field(record, "_id", queries_path, row), field(record, "text", queries_path, row)
            queries.add(id_, text, None, queries_path, row, "_id")
    qrels_path = _find(folder / "qrels", params.split)
    positives = []
    for row, record in read_records(qrels_path, bad_rows):
        with _each_row(bad_rows):
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
    for row, record in read_records(path, bad_rows):
        with _each_row(bad_rows):  # every field is checked before anything is added: a skipped row leaves no trace
            anchor = field(record, params.anchor_column, path, row)
            positive = field(record, params.positive_column, path, row)
            negative = field(record, params.negative_column, path, row) if params.negative_column else None
            query_id = queries.add(stable_id("q", anchor), anchor, None, path, row, params.anchor_column)
            doc_id = corpus.add(stable_id("d", positive), positive, None, path, row, params.positive_column)
            positives.append((query_id, doc_id, 1.0))
            if negative is not None:
                corpus.add(stable_id("d", negative), negative, None, path, row, params.negative_column)
    return corpus, queries, positives


def ingest(params: IngestParams) -> dict[str, pa.Table]:
    """Read the configured source; returns the corpus, queries, positives and rejections tables."""
    bad_rows = BadRows() if params.on_bad_row == "skip" else None
    corpus, queries, positives = (read_beir if params.format == "beir" else read_pairs)(params, bad_rows)
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
