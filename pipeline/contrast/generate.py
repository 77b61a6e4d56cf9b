"""What the generate stage computes: pick the source texts, edit them with the rules and the LLM (each a declared
model call of `pipeline.work`, the LLM's edits cached), and turn what came back into the `contrast`, `attempts` and
`rejections` tables, so that every (source, op) tried is accounted for: applied, not applicable, or failed with
its reason and raw output."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, ingest, ledger, records, schema, work
from pairforge.pipeline.contrast.prompts import CONTROLS, EditBatch, edit_task
from pairforge.pipeline.params import GenerateParams
from pairforge.pipeline.runtime import Resources
from pairforge.pipeline.schema import InputError
from pairforge.pipeline.vocabulary import APPLIED, PENDING, TEXT_TOO_LONG, passing_failure

RULES = "rules"  # the `generator` of rule-based edits


def sentences(path: str | Path, column: str) -> pa.Table:
    """`source_kind`, `source_id`, `text` from a sentence file (STS-B / SICK style); repeated sentences once."""
    texts: dict[str, str] = {}
    for row, record in records.read_records(Path(path)):
        text = records.field(record, column, Path(path), row, param="generate.sentence_column")
        texts.setdefault(ingest.stable_id("s", text), text)
    if not texts:
        raise InputError(path, None, column, "no sentences")
    return pa.table({"source_kind": ["sentence"] * len(texts), "source_id": list(texts), "text": list(texts.values())})


def source_table(config: GenerateParams, ingested: Path, pairs: Path) -> pa.Table:
    """`source_kind`, `source_id`, `text` of what the params say to edit, in the pairs' order."""
    if config.source == "sentences":
        return sentences(config.sentences_file, config.sentence_column)
    if config.source == "queries":
        queries = artifacts.read(pairs / "queries")
        return pa.table(
            {"source_kind": ["query"] * queries.num_rows, "source_id": queries["query_id"], "text": queries["text"]}
        )
    corpus = artifacts.read(ingested / "corpus", ["doc_id", "text"])
    text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    doc_ids = list(dict.fromkeys(artifacts.read(pairs / "positives", ["doc_id"])["doc_id"].to_pylist()))
    return pa.table(
        {"source_kind": ["positive"] * len(doc_ids), "source_id": doc_ids, "text": [text[d] for d in doc_ids]}
    )


def sample(table: pa.Table, max_items: int, seed: int) -> pa.Table:
    """A seeded random sample of `max_items` rows (0: all) in a seeded order, so that the first k rows of the
    sample are the sample of size k: the LLM sample is a prefix of the rule sample."""
    order = list(range(table.num_rows))
    random.Random(seed).shuffle(order)
    return table.take(order[: max_items or None])


def within_length(config: GenerateParams, items: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table]:
    """(the items of at most `max_chars` characters, and for every rule op of each longer one its attempt and its
    ledger row, reason `text_too_long` with the length): no parser, tokenizer or prompt sees a longer text."""
    lengths = pc.utf8_length(items["text"])
    fits = pc.less_equal(lengths, config.max_chars)
    long, ops = items.filter(pc.invert(fits)), config.rules
    count = long.num_rows * len(ops)
    tried = pa.table(
        {
            "source_kind": [k for k in long["source_kind"].to_pylist() for _ in ops],
            "source_id": [s for s in long["source_id"].to_pylist() for _ in ops],
            "op": ops * long.num_rows,
            "outcome": [TEXT_TOO_LONG] * count,
            "reason": [TEXT_TOO_LONG] * count,
            "chars": [n for n in lengths.filter(pc.invert(fits)).to_pylist() for _ in ops],
            "generator": [RULES] * count,
        }
    )
    attempts = tried.select(schema.ATTEMPTS.names).cast(schema.ATTEMPTS)
    rejections = ledger.entries("generate", "edit", tried, ("chars",), ("source_kind", "source_id", "op"))
    return items.filter(fits), attempts, rejections


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


def rule_edits(config: GenerateParams, items: pa.Table) -> Iterator[tuple[pa.Table, pa.Table]]:
    """(contrast, attempts) of the rule ops over `items`, a pair of tables per task, in item order."""
    from pairforge.pipeline.contrast.rules import RuleBatch  # spaCy: loaded in the actors, not in the stage process

    resources = Resources(config.actors, config.cpus_per_actor, 0.0)
    for results in work.stream(work.Work(RuleBatch, {"ops": config.rules}, resources, rows_per_task=256), items):
        yield from_rules(results)


def llm_edit_call(config: GenerateParams) -> work.Work:
    """The LLM editor `config` names, as a declared model call (`work.llm_task`): edits cached by the model, the
    prompts' wording, and the (text, control)."""
    prompts = {control: edit_task(control).render(text="") for control in config.llm_controls}
    return work.llm_task(
        config, EditBatch, prompts, ("text", "control"), ("edited", "raw_output", "reason", "attempts")
    )


def llm_edits(config: GenerateParams, items: pa.Table) -> tuple[pa.Table, pa.Table, pa.Table, int]:
    """(contrast, attempts, rejections) of every item of the LLM sample with every control, and how many of
    those edits were made in this run (the rest come from the cache of finished edits)."""
    controls = config.llm_controls
    table = pa.table(
        {
            "source_kind": [k for k in items["source_kind"].to_pylist() for _ in controls],
            "source_id": [s for s in items["source_id"].to_pylist() for _ in controls],
            "text": [t for t in items["text"].to_pylist() for _ in controls],
            "control": controls * items.num_rows,
        }
    )
    results, made = work.compute(llm_edit_call(config), table)
    return (*from_llm(results, f"llm:{config.llm_backend}:{config.llm_model}"), made)


def pending(attempts: pa.Table) -> int:
    """How many attempts wait for an endpoint that failed on them: the next run asks for exactly these."""
    return pc.sum(pc.equal(attempts["outcome"], PENDING)).as_py() or 0


def from_llm(results: pa.Table, generator: str) -> tuple[pa.Table, pa.Table, pa.Table]:
    """EditBatch output (source_kind, source_id, text, control, edited, raw_output, reason) -> (contrast, attempts,
    ledger rows of the failed items, keyed source_kind/source_id/op, with the raw output as detail). An item the
    endpoint failed on is `pending`: an attempt, no ledger row (nothing was decided about it)."""
    ops = [f"llm_{c}" for c in results["control"].to_pylist()]
    outcomes = [PENDING if passing_failure(r) else r or APPLIED for r in results["reason"].to_pylist()]
    results = results.append_column("op", pa.array(ops, pa.string())).append_column("outcome", pa.array(outcomes))
    preserves = [CONTROLS[c][3] for c in results["control"].to_pylist()]
    results = results.append_column("preserves_meaning", pa.array(preserves, pa.bool_()))
    results = results.rename_columns(["original" if n == "text" else n for n in results.column_names])
    applied = results.filter(pc.equal(results["outcome"], APPLIED))
    applied = applied.append_column("change", pa.array([f"LLM control {c}" for c in applied["control"].to_pylist()]))
    contrast = _contrast(applied, [generator] * applied.num_rows, applied["raw_output"])
    failed = results.filter(pc.invert(pc.is_in(results["outcome"], pa.array([APPLIED, PENDING]))))
    failed = failed.append_column("detail", failed["raw_output"])
    rejections = ledger.entries("generate", "edit", failed, ("attempts",), ("source_kind", "source_id", "op"))
    return contrast, _attempts(results, generator), rejections
