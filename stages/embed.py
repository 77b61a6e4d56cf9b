"""DVC stage `embed`: ingested corpus and queries -> data/embeddings/{corpus,queries}, in a Ray actor pool.

The stage streams: it reads the ingested texts in chunks, embeds only those missing from the embedding cache,
and checkpoints finished vectors into the cache as they arrive (so a re-run after a crash, or after new
documents were added, embeds only what is missing). A second pass writes the artifacts from the cache in
ingest order. Neither pass holds more than a chunk of texts or vectors in this process.
"""

import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, embed, models, params, runtime, schema
from pipeline.embed_cache import EmbeddingCache, text_hashes
from stages.common import EMBEDDINGS, INGESTED, stage

# Texts read, length-sorted and embedded together: bounds this process's memory. Chunks are cut by position in
# the input (corpus, then queries), not by how many texts are missing, so a resumed run batches the remaining
# texts exactly as the interrupted run would have, and writes the same bytes.
CHUNK_ROWS = 65_536

SOURCES = (("corpus", "doc_id"), ("queries", "query_id"))


def chunks() -> Iterator[pa.Table]:
    """Tables of CHUNK_ROWS texts (source, id, text, hash) over the corpus, then the queries, in ingest order."""

    def rows() -> Iterator[pa.Table]:
        for name, id_column in SOURCES:
            for batch in artifacts.iter_batches(INGESTED / name, CHUNK_ROWS, [id_column, "text"]):
                yield pa.table(
                    {
                        "source": pa.array([name] * batch.num_rows),
                        "id": batch[id_column],
                        "text": batch["text"],
                        "hash": pa.array(text_hashes(batch["text"]), pa.uint64()),
                    }
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


def missing(chunk: pa.Table, cache: EmbeddingCache) -> pa.Table:
    """The chunk's texts that are not cached, each distinct text once, longest first."""
    todo = chunk.filter(pa.array(~cache.contains(chunk["hash"].to_numpy()))).select(["id", "text", "hash"])
    _, first = np.unique(todo["hash"].to_numpy(), return_index=True)
    return embed.length_sorted(todo.take(np.sort(first)))


def fill(cache: EmbeddingCache, todo: pa.Table, worker_args: dict, config: params.EmbedParams) -> None:
    """Embed `todo` in the actor pool, adding a cache shard about every `checkpoint_rows` texts and at the end."""
    task_rows = config.batch_size * 2
    # Whole tasks per shard, so a resumed run's tasks (and hence batches and bytes) line up with the first run's.
    tasks_per_shard = max(1, config.checkpoint_rows // task_rows)
    resources = runtime.Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)
    pending: list[pa.Table] = []

    def checkpoint() -> None:
        done = pa.concat_tables(pending)
        cache.add(done["hash"].to_numpy(), embed.to_numpy(done["vector"]), done["truncated"].to_numpy())
        pending.clear()

    for batch in runtime.map_batches(todo, embed.EmbedBatch, worker_args, resources, rows_per_task=task_rows):
        pending.append(batch)
        if len(pending) == tasks_per_shard:
            checkpoint()
    if pending:
        checkpoint()


def main() -> None:
    with stage("embed") as log:
        config = params.load("embed")
        folder = models.resolve(config.model)
        fingerprint = models.fingerprint(folder)
        cache = EmbeddingCache(config.cache, {"model": fingerprint, "max_length": config.max_length})
        worker_args = {
            "model": str(folder),
            "max_length": config.max_length,
            "batch_size": config.batch_size,
            "device": config.device,
        }
        started, embedded, cached_before = time.perf_counter(), 0, len(cache)
        for chunk in chunks():
            todo = missing(chunk, cache)
            if todo.num_rows:
                fill(cache, todo, worker_args, config)
                embedded += todo.num_rows
        seconds = time.perf_counter() - started
        log.info(
            "embedded %d new texts in %.1f s (%.1f texts/s); %d were already in the cache %s",
            embedded,
            seconds,
            embedded / seconds if embedded else 0.0,
            cached_before,
            cache.folder,
        )
        inputs = {"ingested": artifacts.fingerprint(INGESTED), "model": fingerprint}
        truncated = 0
        with artifacts.ArtifactWriter(EMBEDDINGS, config, inputs) as out:
            for chunk in chunks():
                vectors, cut = cache.lookup(chunk["hash"].to_numpy())
                truncated += int(cut.sum())
                vectors_schema = schema.embeddings(vectors.shape[1], config.model, fingerprint)
                for name, _ in SOURCES:
                    rows = pc.equal(chunk["source"], name).to_numpy(zero_copy_only=False)
                    table = pa.table(
                        {"id": chunk["id"].filter(pa.array(rows)), "vector": embed.vectors_column(vectors[rows])}
                    )
                    if table.num_rows:
                        out.write(name, table, vectors_schema)
            log.info(
                "wrote %d docs and %d queries; %d texts truncated to the model's limit",
                out.rows("corpus"),
                out.rows("queries"),
                truncated,
            )


if __name__ == "__main__":
    main()
