"""What the generate stage computes, as plain functions: pick the source texts, and turn what the rules and LLMs
returned into the `contrast`, `attempts` and `rejections` tables, so that every (source, op) tried is accounted
for: applied, not applicable, or failed with its reason and raw output."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import ingest, ledger, schema
from pipeline.schema import InputError
from pipeline.vocabulary import APPLIED

RULES = "rules"  # the `generator` of rule-based edits


def sentences(path: str | Path, column: str) -> pa.Table:
    """`source_kind`, `source_id`, `text` from a sentence file (STS-B / SICK style); repeated sentences once."""
    texts: dict[str, str] = {}
    for row, record in ingest.read_records(Path(path)):
        text = ingest.field(record, column, Path(path), row)
        texts.setdefault(ingest.stable_id("s", text), text)
    if not texts:
        raise InputError(path, None, column, "no sentences")
    return pa.table({"source_kind": ["sentence"] * len(texts), "source_id": list(texts), "text": list(texts.values())})


def sample(table: pa.Table, max_items: int, seed: int) -> pa.Table:
    """A seeded random sample of `max_items` rows (0: all) in a seeded order, so that the first k rows of the
    sample are the sample of size k: the LLM sample is a prefix of the rule sample."""
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    return table.take(order[: max_items or None])


def pair_id(source_kind: str, source_id: str, op: str, generator: str) -> str:
    key = "\x1f".join((source_kind, source_id, op, generator))
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _contrast(applied: pa.Table, generator: list[str], raw_output: pa.Array | list) -> pa.Table:
    ids = [
        pair_id(k, s, o, g)
        for k, s, o, g in zip(
            applied["source_kind"].to_pylist(), applied["source_id"].to_pylist(), applied["op"].to_pylist(), generator
        )
    ]
    columns = {
        "pair_id": ids,
        "source_kind": applied["source_kind"],
        "source_id": applied["source_id"],
        "original": applied["original"],
        "edited": applied["edited"],
        "op": applied["op"],
        "generator": generator,
        "preserves_meaning": applied["preserves_meaning"],
        "change": applied["change"],
        "raw_output": raw_output,
    }
    return pa.table(columns, schema=schema.CONTRAST)


def _attempts(results: pa.Table, generator: str) -> pa.Table:
    columns = {name: results[name] for name in ("source_kind", "source_id", "op", "outcome")}
    return pa.table({**columns, "generator": [generator] * results.num_rows}).select(schema.ATTEMPTS.names)


def from_rules(results: pa.Table) -> tuple[pa.Table, pa.Table]:
    """RuleBatch output -> (contrast rows of the applied edits, attempts)."""
    applied = results.filter(pc.equal(results["outcome"], APPLIED)).rename_columns(
        ["change" if name == "detail" else name for name in results.column_names]
    )
    return _contrast(applied, [RULES] * applied.num_rows, [None] * applied.num_rows), _attempts(results, RULES)


def from_llm(results: pa.Table, generator: str) -> tuple[pa.Table, pa.Table, pa.Table]:
    """EditBatch output (source_kind, source_id, text, control, edited, raw_output, reason) -> (contrast, attempts,
    ledger rows of the failed items, keyed source_kind/source_id/op, with the raw output as detail)."""
    from pipeline.contrast.prompts import CONTROLS

    ops = [f"llm_{c}" for c in results["control"].to_pylist()]
    outcomes = [reason or APPLIED for reason in results["reason"].to_pylist()]
    results = results.append_column("op", pa.array(ops, pa.string())).append_column("outcome", pa.array(outcomes))
    preserves = [CONTROLS[c][3] for c in results["control"].to_pylist()]
    results = results.append_column("preserves_meaning", pa.array(preserves, pa.bool_()))
    results = results.rename_columns(["original" if n == "text" else n for n in results.column_names])
    applied = results.filter(pc.equal(results["outcome"], APPLIED))
    applied = applied.append_column("change", pa.array([f"LLM control {c}" for c in applied["control"].to_pylist()]))
    contrast = _contrast(applied, [generator] * applied.num_rows, applied["raw_output"])
    failed = results.filter(pc.not_equal(results["outcome"], APPLIED))
    failed = failed.append_column("detail", failed["raw_output"])
    rejections = ledger.entries("generate", "edit", failed, ("attempts",), ("source_kind", "source_id", "op"))
    return contrast, _attempts(results, generator), rejections
