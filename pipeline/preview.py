"""Rows to read: an exported format's rows, or the rejections of one reason with the texts they were about (the
ledger keeps ids and hashes only), as blocks for a terminal or a Markdown table for the dataset card; and what each
exported column holds, the card's glossary."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import polars as pl
import pyarrow as pa

from pairforge.pipeline import artifacts, ledger
from pairforge.pipeline.schema import InputError

PAIR_KINDS = ("candidate", "negative")  # ledger kinds keyed query_id/doc_id (mine's candidates, filter's negatives)
TEXTS = ("query", "document", "original", "edited")
WRAP = {"break_on_hyphens": False, "break_long_words": False}  # ids, numbers and URLs stay whole
COSINE = "the encoder's cosine similarity of"
# One line per exported column; "format:column" where a column means something else in that format.
GLOSSARY = {
    "anchor": "the text a row is about: the query (for an edit of a query, a document it answers; for a sentence "
    "edit, the sentence)",
    "positive": "a text the anchor matches: the query's judged positive document (for an edit of a query, the query)",
    "negative": "a text it does not match: a mined hard negative, or a minimal edit of the positive (`negative_kind`)",
    "negative_<i>": "the i-th hardest mined negative of the (anchor, positive) pair",
    "document": "a text judged for the anchor: a positive (`label` 1) or a negative (`label` 0)",
    "label": "1 where `document` is a positive of the anchor, 0 where it is a negative",
    "documents": "the positive, then the pair's mined negatives, hardest first",
    "labels": "1 for the positive, then 0 for each negative, in the order of `documents`",
    "score": f"{COSINE} anchor and document (null for a counterfactual)",
    "n-tuple-scores:score": "scores of [positive, negative_1, ...] to distil: the teacher's, as said above",
    "scores": f"{COSINE} the anchor and each of `documents`",
    "query_id": "the query's id in the source (null for a sentence edit)",
    "anchor_id": "the anchor's id (a document's, a query's or a sentence's)",
    "positive_id": "the positive's id (a document's; a query's for an edit of a query)",
    "negative_id": "the negative's id: a document's, or the edit's `pair_id` for a counterfactual",
    "negative_ids": "the ids of negative_1, negative_2, ...",
    "doc_id": "the document's id (the edit's `pair_id` for a counterfactual)",
    "doc_ids": "the ids of `documents`",
    "negative_kind": "`mined` (retrieved from the corpus) or `counterfactual` (a minimal edit)",
    "kind": "`positive`, `mined` or `counterfactual`",
    "op": "the edit that made a counterfactual (a rule's op code or an LLM control; null for a mined negative)",
    "generator": "what made the edit: `rules`, or the LLM's model",
    "source_kind": "what was edited: a `query`, a `positive` document or a `sentence`",
    "direction": "how the row reads: `document->query`, `query->document` or `sentence->sentence`",
    "pos_score": f"{COSINE} anchor and positive",
    "neg_score": f"{COSINE} anchor and negative (null for a counterfactual)",
    "neg_scores": f"{COSINE} the anchor and each of negative_1, negative_2, ...",
    "topic": "the query's k-means topic (`index.topics` clusters of the query vectors)",
    "pair_doc": "the document of the (query, positive) pair whose negatives the row holds",
    "positive_kind": "where the row's (query, positive) pair comes from: `judged` (the source's labels), "
    "`generated` (a query the pairs stage wrote and kept) or `promoted` (a mined candidate every judge found "
    "relevant); null on a row that holds no such pair",
    "batch_id": "the training batch (`export.batching`): a batch's rows are consecutive",
}


def shorten(text: str, chars: int) -> str:
    """`text` on one line, cut to at most `chars` characters (0: whole) at a word boundary, with … where cut."""
    flat = " ".join(text.split())
    if not chars or len(flat) <= chars:
        return flat
    cut = flat[: chars - 1]
    if " " in cut[chars // 2 :]:  # a word boundary not too far back, else the word is cut
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip() + "…"


def cell(value: object, chars: int) -> str:
    """One value on one line: texts shortened, floats to 4 significant digits, a list's items sharing `chars`, a map
    as `name value` pairs."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return shorten(value, chars)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):  # the ledger's scores map
        return ", ".join(f"{name} {cell(item, chars)}" for name, item in value.items())
    if isinstance(value, list):
        share = max(24, chars // max(1, len(value))) if chars else 0
        return "[" + ", ".join(cell(item, share) for item in value) + "]"
    return str(value)


def exported(data: Path, fmt: str, split: str, n: int) -> pl.DataFrame:
    """The first `n` rows of an exported format's split, in the order a trainer reads them."""
    rows = artifacts.manifest(data / "export")["rows"]
    if split not in rows.get(fmt, {}):
        known = "; ".join(f"{name} ({', '.join(splits)})" for name, splits in rows.items())
        raise InputError(data / "export", None, "format", f"no {fmt!r} with split {split!r}; exported: {known}")
    folder = data / "export" / fmt / ("" if split == "train" else split)
    first = next(artifacts.iter_batches(folder, max(1, n)), None)
    return pl.from_arrow(first).head(n) if first is not None else pl.DataFrame()


def rejected(data: Path, reason: str, stage: str | None, n: int) -> pl.DataFrame:
    """The first `n` ledger rows with `reason` (at `stage`, when given), with the texts they were about: a mined or
    filtered candidate's query and document, a filtered edit's original and edited text, a failed generation's
    source text (its raw output is the detail). Ingest's rejections (merged duplicates, bad rows) have none."""
    frame = ledger.rejections(data).filter(pl.col("reason") == reason)
    if stage:
        frame = frame.filter(pl.col("stage") == stage)
    rows = frame.head(n).collect()
    if not rows.height:
        counts, _ = ledger.summary(data, samples=0)
        known = ", ".join(f"{s}/{r} ({count})" for s, r, count in counts.iter_rows())
        where = f" at stage {stage}" if stage else ""
        raise InputError(data, None, "reason", f"no rejection with reason {reason!r}{where}; the ledger holds {known}")
    texts = pl.DataFrame(_texts(data, rows.to_dicts()), schema=dict.fromkeys(TEXTS, pl.String))
    found = [name for name in TEXTS if texts[name].null_count() < texts.height]
    return pl.concat([rows, texts.select(found)], how="horizontal")


def _texts(data: Path, rows: list[dict]) -> list[dict]:
    """Per ledger row, the texts named by its key: "query_id/doc_id" (split where both ids exist: ids may hold a
    slash), a filtered edit's pair_id, or a generation's "source_kind/source_id/op"."""
    splits = {
        r["key"]: [(r["key"][:i], r["key"][i + 1 :]) for i, c in enumerate(r["key"]) if c == "/"]
        for r in rows
        if r["kind"] in PAIR_KINDS
    }
    sources = {
        r["key"]: (r["key"].split("/", 1)[0], r["key"].split("/", 1)[1].rsplit("/", 1)[0])
        for r in rows
        if r["stage"] == "generate"
    }
    wanted = {kind: [i for k, i in sources.values() if k == kind] for kind in ("query", "positive", "sentence")}
    queries = _select(
        data / "ingested/queries", "query_id", [q for s in splits.values() for q, _ in s] + wanted["query"]
    )
    docs = _select(data / "ingested/corpus", "doc_id", [d for s in splits.values() for _, d in s] + wanted["positive"])
    sentences = _select(data / "generated/contrast", "source_id", wanted["sentence"], ["original"])
    edits = _select(data / "filtered/edits", "pair_id", [r["key"] for r in rows if r["stage"] == "filter"], TEXTS[2:])
    found = []
    for row in rows:
        key, texts = row["key"], dict.fromkeys(TEXTS)
        pair = next(((q, d) for q, d in splits.get(key, []) if q in queries and d in docs), None)
        if pair:
            texts["query"], texts["document"] = queries[pair[0]][0], docs[pair[1]][0]
        elif key in sources:
            kind, source_id = sources[key]
            texts["original"] = {"query": queries, "positive": docs, "sentence": sentences}[kind].get(
                source_id, [None]
            )[0]
        elif key in edits:
            texts["original"], texts["edited"] = edits[key]
        found.append(texts)
    return found


def _select(path: Path, key: str, ids: list[str], columns: tuple | list = ("text",)) -> dict[str, tuple]:
    """`columns` of the rows of an artifact whose `key` is one of `ids`, by key (streamed: the corpus need not fit)."""
    if not ids:
        return {}
    table = artifacts.select(path, key, pa.array(sorted(set(ids)), pa.string()), [key, *columns])
    return dict(zip(table[key].to_pylist(), zip(*(table[c].to_pylist() for c in columns))))


def blocks(frame: pl.DataFrame, chars: int, width: int) -> str:
    """Each row as a block of `column  value` lines, long values wrapped to `width` under their start; a list of
    texts too long for one line gets a line per item."""
    label = max(map(len, frame.columns), default=0) + 6
    out = []
    for number, row in enumerate(frame.iter_rows(named=True), 1):
        out.append(f"── {number} of {frame.height} ".ljust(width, "─"))
        for column, value in row.items():
            line = cell(value, chars)
            items = value if isinstance(value, list) and len(line) > width - label else [value]
            for i, item in enumerate(items):
                name = column if len(items) == 1 else f"{column}[{i}]"
                text = line if len(items) == 1 else cell(item, chars)
                out.append(
                    textwrap.fill(text, width, initial_indent=name.ljust(label), subsequent_indent=" " * label, **WRAP)
                    if text
                    else name
                )
    return "\n".join(out)


def markdown(table: pa.Table, chars: int) -> list[str]:
    """The rows as a Markdown table, a line per row, texts shortened to `chars`."""
    escape = str.maketrans({"|": "\\|", "<": "&lt;"})  # a cell's pipe would end it; a tag would be rendered
    rows = [[cell(value, chars).translate(escape) for value in row.values()] for row in table.to_pylist()]
    return [
        f"| {' | '.join(table.column_names)} |",
        f"|{' --- |' * table.num_columns}",
        *(f"| {' | '.join(r)} |" for r in rows),
    ]


def glossary(tables: dict[str, dict[str, pa.Table]]) -> list[str]:
    """A Markdown line per exported column: what it holds, and in which formats."""
    where: dict[str, list[str]] = {}
    for fmt, splits in tables.items():
        for column in splits["train"].column_names:
            key = re.sub(r"^negative_\d+$", "negative_<i>", column)
            key = f"{fmt}:{key}" if f"{fmt}:{key}" in GLOSSARY else key
            if fmt not in where.setdefault(key, []):
                where[key].append(fmt)
    return [f"- `{key.split(':')[-1]}` ({', '.join(fmts)}): {GLOSSARY.get(key, '')}" for key, fmts in where.items()]
