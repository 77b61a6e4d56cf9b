"""Embedding: texts in, L2-normalised float32 vectors out, keyed by id."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import schema


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
