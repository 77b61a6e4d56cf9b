"""Embedding: texts in, L2-normalised float32 vectors out, keyed by id, through the embedding cache.

The embed stage streams: it reads the ingested texts in chunks, embeds only those missing from the cache (in the
encoder's actor pool), checkpoints finished vectors as they arrive, and hands back each chunk's vectors in ingest
order. No step holds more than a chunk of texts or vectors, so a re-run after a crash, or after new documents were
added, embeds only what is missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, models, schema, work
from pipeline.params import EmbedParams
from pipeline.runtime import Resources
from pipeline.shard_cache import EmbeddingCache

# Texts read, length-sorted and embedded together: bounds the stage's memory. Chunks are cut by position in the
# input (corpus, then queries), not by how many texts are missing, so a resumed run batches the remaining texts
# exactly as the interrupted run would have, and writes the same bytes.
CHUNK_ROWS = 65_536
SOURCES = (("corpus", "doc_id"), ("queries", "query_id"))


def length_sorted(table: pa.Table) -> pa.Table:
    """Longest texts first (ties by id), so that each batch holds texts of similar length and pads little.

    The order is a pure function of the texts, so the embeddings artifact is the same bytes on every run.
    """
    lengths = pc.utf8_length(table.column("text"))
    return (
        table.append_column("_length", lengths)
        .sort_by([("_length", "descending"), ("id", "ascending")])
        .drop(["_length"])
    )


class EmbedBatch:
    """Actor body: loads the encoder once, then turns tables of (id, text, ...) into (id, ..., vector, truncated).

    Columns other than `text` pass through, so callers can carry keys (a text hash, a kind) along.
    """

    def __init__(
        self, model: str, max_length: int, batch_size: int, device: str, precision: str = "fp32", runtime: str = "torch"
    ):
        # Imported here, in the actor: stage drivers that only read vectors (index, mine, filter) and the embed
        # driver itself would otherwise pay torch's and transformers' ~1.7 s import before Ray even starts.
        from pipeline.models.encoder import Encoder

        self.encoder = Encoder(model, max_length, batch_size, device, precision, runtime)

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors, truncated = self.encoder.encode(batch.column("text").to_pylist())
        return (
            batch.drop_columns(["text"])
            .append_column("vector", schema.vectors_column(vectors))
            .append_column("truncated", pa.array(truncated))
        )


def embedding(config: EmbedParams) -> work.Work:
    """The encoder `config` names, as a declared model call: vectors cached by the model's fingerprint, its length
    limit, precision and runtime, and the text."""
    folder = models.resolve(config.model)
    settings = {
        "model": models.fingerprint(folder),
        "max_length": config.max_length,
        "precision": config.precision,
        "runtime": config.runtime,
    }
    args = {
        "model": str(folder),
        "max_length": config.max_length,
        "batch_size": config.batch_size,
        "device": config.device,
        "precision": config.precision,
        "runtime": config.runtime,
    }
    return work.Work(
        worker=EmbedBatch,
        args=args,
        resources=Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor),
        rows_per_task=config.batch_size * 2,
        columns=("vector", "truncated"),
        inputs=("id", "text"),
        key=("text",),
        cache=work.Cache(config.cache, settings, config.checkpoint_rows, EmbeddingCache),
        arrange=length_sorted,
    )


def vectors(config: EmbedParams, texts: list[str]) -> np.ndarray:
    """The embed stage's vectors for these texts (rows in order), from its cache, computing the missing ones."""
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.string())})
    return schema.vectors_matrix(work.compute(embedding(config), table)[0]["vector"])


def chunks(ingested: Path) -> Iterator[pa.Table]:
    """Tables of CHUNK_ROWS texts (source, id, text) over the corpus, then the queries, in ingest order."""

    def rows() -> Iterator[pa.Table]:
        for name, id_column in SOURCES:
            for batch in artifacts.iter_batches(ingested / name, CHUNK_ROWS, [id_column, "text"]):
                yield pa.table(
                    {"source": pa.array([name] * batch.num_rows), "id": batch[id_column], "text": batch["text"]}
                )

    buffered: list[pa.Table] = []
    for batch in rows():
        buffered.append(batch)
        while sum(t.num_rows for t in buffered) >= CHUNK_ROWS:
            table = pa.concat_tables(buffered)
            yield table.slice(0, CHUNK_ROWS)
            buffered = [table.slice(CHUNK_ROWS)]
    if sum(t.num_rows for t in buffered):
        yield pa.concat_tables(buffered)


@dataclass(frozen=True)
class EmbeddedChunk:
    """A chunk's vectors per source (id, vector; the model in the schema's metadata), how many texts of each source
    the encoder cut at its token limit, and how many texts it embedded now (the rest came from the cache)."""

    vectors: dict[str, pa.Table]
    truncated: dict[str, int]
    computed: int


def embed_ingested(config: EmbedParams, ingested: Path) -> Iterator[EmbeddedChunk]:
    """Every ingested text's vector, chunk by chunk in ingest order (corpus, then queries)."""
    call = embedding(config)
    for chunk in chunks(ingested):
        out, computed = work.compute(call, chunk)
        contract = schema.embeddings(out["vector"].type.list_size, config.model, call.cache.settings["model"])
        parts = {name: out.filter(pc.equal(out["source"], name)) for name, _ in SOURCES}
        yield EmbeddedChunk(
            {name: part.select(["id", "vector"]).cast(contract) for name, part in parts.items() if part.num_rows},
            {name: int(pc.sum(part["truncated"]).as_py() or 0) for name, part in parts.items()},
            computed,
        )
