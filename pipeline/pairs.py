"""The pairs every later stage trains on: the judged ones ingested, plus queries an LLM wrote for documents that
have none, each kept only when it passes `pipeline.round_trip`. `positive_kind` tells the two apart.

With no query style in params this is the ingested pairs, marked `judged`. Otherwise: a seeded sample of the corpus
(documents of judged pairs left out unless asked for), queries written for it (`pipeline.query_writing`, cached),
the documents and queries embedded through the embed stage's own cache (so that stage then finds them there), the
round trip searched over the whole corpus chunk by chunk, and every query accounted for: kept, rejected with its
reason and scores in the ledger, or pending where an endpoint failed on it.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, embed, ingest, ledger, query_writing, round_trip, schema
from pairforge.pipeline.filtering import judges
from pairforge.pipeline.params import EmbedParams, FilterParams, PairsParams
from pairforge.pipeline.schema import InputError
from pairforge.pipeline.vocabulary import GENERATED, JUDGED, KEPT, PENDING, REJECTED, UNPARSEABLE, passing_failure

CORPUS_CHUNK = 65_536  # documents embedded and searched at once in the round trip
DOCUMENT_BLOCK = 16_384  # documents written for, then judged, at once


def judged(ingested: Path) -> tuple[pa.Table, pa.Table]:
    """The ingested queries, and their positives marked `judged`."""
    positives = artifacts.read(ingested / "positives")
    kinds = pa.array([JUDGED] * positives.num_rows, pa.string())
    return artifacts.read(ingested / "queries"), positives.append_column("positive_kind", kinds)


def document_ids(ingested: Path, config: PairsParams) -> pa.Array:
    """The ids of the documents to write queries for: `max_items` sampled with `seed` (0: all), in a seeded order,
    the judged pairs' documents left out unless `include_judged_documents`."""
    doc_ids = artifacts.read(ingested / "corpus", ["doc_id"])["doc_id"]
    if not config.include_judged_documents:
        labelled = artifacts.read(ingested / "positives", ["doc_id"])["doc_id"]
        doc_ids = doc_ids.filter(pc.invert(pc.is_in(doc_ids, labelled)))
    order = list(range(len(doc_ids)))
    random.Random(config.seed).shuffle(order)
    return doc_ids.take(order[: config.max_items or None]).combine_chunks()


def documents(ingested: Path, doc_ids: pa.Array) -> pa.Table:
    """doc_id, text of these documents, in this order."""
    found = artifacts.select(ingested / "corpus", "doc_id", doc_ids, ["doc_id", "text"])
    position = {d: i for i, d in enumerate(doc_ids.to_pylist())}
    return found.take(sorted(range(found.num_rows), key=lambda i: position[found["doc_id"][i].as_py()]))


def corpus_vectors(embedding: EmbedParams, ingested: Path) -> Iterator[tuple[list[str], np.ndarray]]:
    for chunk in artifacts.iter_batches(ingested / "corpus", CORPUS_CHUNK, ["doc_id", "text"]):
        texts = chunk["text"].to_pylist()
        yield chunk["doc_id"].to_pylist(), embed.vectors(embedding, texts, ["document"] * len(texts))


@dataclass(frozen=True)
class Generated:
    """`written`: every query written (and every failed ask), its decision, reason and scores; `queries`,
    `positives`: the kept ones as pairs; `rejections`: ledger rows; `asked`: how many asks were made now."""

    written: pa.Table
    queries: pa.Table
    positives: pa.Table
    rejections: pa.Table
    asked: int


def generate(
    config: PairsParams,
    embedding: EmbedParams,
    ingested: Path,
    judged_pairs: tuple[pa.Table, pa.Table],
    judge: FilterParams | None,
) -> Iterator[Generated]:
    """Write queries for the sampled documents and judge every one, `DOCUMENT_BLOCK` documents at a time (memory
    holds one block's documents and queries, and a chunk of the corpus's vectors); one `Generated` per block.
    `judged_pairs`: the ingested queries and positives (`judged`)."""
    queries, positives = judged_pairs
    shown = []
    chosen = query_writing.example_pairs(queries, positives, config.few_shot, config.seed)
    if chosen:
        shown_docs = documents(ingested, pa.array([d for d, _ in chosen], pa.string()))
        shown_text = dict(zip(shown_docs["doc_id"].to_pylist(), shown_docs["text"].to_pylist()))
        shown = [(shown_text[d][: config.max_document_chars], query) for d, query in chosen]
    # Texts no query may repeat: the judged queries, the prompts' example queries, then every query written.
    seen = {round_trip.normal(text) for text in queries["text"].to_pylist()}
    for task in query_writing.tasks(config, shown).values():
        seen |= {round_trip.normal(text) for text in query_writing.example_queries(task)}
    doc_ids = document_ids(ingested, config)
    for start in range(0, len(doc_ids), DOCUMENT_BLOCK):
        yield _block(config, embedding, judge, ingested, documents(ingested, doc_ids[start : start + DOCUMENT_BLOCK]),
                     shown, seen)  # fmt: skip


def _block(config, embedding, judge, ingested, sources: pa.Table, shown, seen: set[str]) -> Generated:
    corpus_text = dict(zip(sources["doc_id"].to_pylist(), sources["text"].to_pylist()))
    results, asked = query_writing.write(config, sources, shown)
    failures = results.filter(pc.is_null(results["queries"]))
    flat = [
        (doc_id, style, text)
        for doc_id, style, written in zip(*(results[c].to_pylist() for c in ("doc_id", "style", "queries")))
        for text in written or ()
    ]
    doc_ids, styles, texts = (list(column) for column in zip(*flat)) if flat else ([], [], [])
    measures = measure(config, embedding, judge, ingested, texts, doc_ids, corpus_text, seen)
    ids = [ingest.stable_id("g", f"{d}\x1f{t}") for d, t in zip(doc_ids, texts)]
    written = pa.table(
        {
            "query_id": ids, "doc_id": doc_ids, "style": styles, "text": texts,
            "decision": [REJECTED if r else KEPT for r in measures["reason"]], **measures,
            "raw_output": [None] * len(ids),
        }, schema=schema.WRITTEN_QUERIES,
    )  # fmt: skip
    written = pa.concat_tables([written, _failed(failures)])
    kept = written.filter(pc.equal(written["decision"], KEPT))
    ones = pa.array([1.0] * kept.num_rows, pa.float32())
    kinds = pa.array([GENERATED] * kept.num_rows, pa.string())
    return Generated(
        written,
        kept.select(["query_id", "text"]).cast(schema.QUERIES),
        pa.table(
            {"query_id": kept["query_id"], "doc_id": kept["doc_id"], "score": ones, "positive_kind": kinds},
            schema=schema.PAIR_POSITIVES,
        ),  # fmt: skip
        rejections(written),
        asked,
    )


def measure(config, embedding, judge, ingested, texts, doc_ids, corpus_text, seen: set[str]) -> dict[str, list]:
    """Every measure of every written query, and the reason it is rejected (None: kept); `seen`: the normalised
    texts no query may repeat, to which these queries are added; `judge`: the filter's params, when they name a
    cross-encoder (its scores go to the filter's cache, where the filter stage finds them)."""
    if not texts:
        return {name: [] for name in ("reason", "rank", "score", "best_other", "near", "copied_words", "ce_score")}
    copied = np.array([round_trip.copied_words(t, corpus_text[d]) for t, d in zip(texts, doc_ids)])
    lengths = np.array([len(round_trip.words(t)) for t in texts])
    query_vectors = embed.vectors(embedding, texts, ["query"] * len(texts))
    source_texts = [corpus_text[d] for d in doc_ids]
    source_vectors = embed.vectors(embedding, source_texts, ["document"] * len(texts))
    duplicate = round_trip.duplicates(texts, doc_ids, query_vectors, seen, config.duplicate_cosine)
    trip = round_trip.round_trip(query_vectors, source_vectors, doc_ids, corpus_vectors(embedding, ingested),
                                 config.ambiguous_margin)  # fmt: skip
    ce = None
    if judge is not None:
        ce = judges.cross_encoder_scores(judge, texts, [corpus_text[d] for d in doc_ids])
    return {
        "reason": round_trip.reasons(round_trip.copied_span(copied, lengths, config), duplicate, trip, config, ce),
        "ce_score": [None] * len(texts) if ce is None else ce.tolist(),
        "rank": trip.rank.astype(np.int32).tolist(),
        "score": trip.score.tolist(),
        "best_other": [float(b) if np.isfinite(b) else None for b in trip.best_other],
        "near": trip.near.astype(np.int32).tolist(),
        "copied_words": copied.astype(np.int32).tolist(),
    }


def require_pairs(judged_pairs: int, generated: int, outcomes: collections.Counter | None) -> None:
    """Stop with the reason when there is nothing to train on: no judged pair, and no generated query kept
    (`outcomes`: what became of the generated ones, None when none were asked for)."""
    if judged_pairs or generated:
        return
    if outcomes is None:
        problem = ("the source has no judged pairs: set query styles to write queries for its documents (README, "
                   "'Pairs from unlabelled documents')")  # fmt: skip
        raise InputError("params.yaml", None, "pairs.styles", problem)
    written = sum(outcomes.values())
    problem = (f"no pairs: the source has no judged pairs and none of the {written} generated queries was kept "
               f"({dict(outcomes)}); write for more documents (max_items), or use a stronger llm_model")  # fmt: skip
    raise InputError("params.yaml", None, "pairs", problem)


def _failed(failures: pa.Table) -> pa.Table:
    """An ask with no queries: rejected as unparseable (the raw output kept), or pending where the endpoint
    failed on it after its retries (the next run asks again)."""
    reasons = [r or UNPARSEABLE for r in failures["reason"].to_pylist()]
    columns = {
        "doc_id": failures["doc_id"],
        "style": failures["style"],
        "decision": [PENDING if passing_failure(r) else REJECTED for r in reasons],
        "reason": reasons,
        "raw_output": failures["raw_output"],
    }
    missing = {name: [None] * failures.num_rows for name in schema.WRITTEN_QUERIES.names if name not in columns}
    return pa.table({**columns, **missing}).select(schema.WRITTEN_QUERIES.names).cast(schema.WRITTEN_QUERIES)


def rejections(written: pa.Table) -> pa.Table:
    rejected = written.filter(pc.equal(written["decision"], REJECTED))
    detail = [t if t is not None else raw for t, raw in zip(rejected["text"].to_pylist(),
                                                             rejected["raw_output"].to_pylist())]  # fmt: skip
    rejected = rejected.append_column("detail", pa.array(detail, pa.string()))
    ids = pc.fill_null(rejected["query_id"], "")  # an ask that failed has no query id
    rejected = rejected.set_column(rejected.schema.get_field_index("query_id"), "query_id", ids)
    scores = ("rank", "score", "best_other", "near", "copied_words", "ce_score")
    return ledger.entries("pairs", "generated_query", rejected, scores, ("doc_id", "style", "query_id"))
