"""DVC stage `embed`: ingested corpus and queries -> data/embeddings/{corpus,queries}, in a Ray actor pool.

The stage streams: it reads the ingested texts in chunks, embeds only those missing from the embedding cache,
and checkpoints finished vectors into the cache as they arrive (so a re-run after a crash, or after new
documents were added, embeds only what is missing). A second pass writes the artifacts from the cache in
ingest order. Neither pass holds more than a chunk of texts or vectors in this process.
"""

import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, params, schema
from pipeline.shard_cache import fill, row_keys
from stages import scoring
from stages.common import EMBEDDINGS, INGESTED, stage

# Texts read, length-sorted and embedded together: bounds this process's memory. Chunks are cut by position in
# the input (corpus, then queries), not by how many texts are missing, so a resumed run batches the remaining
# texts exactly as the interrupted run would have, and writes the same bytes.
CHUNK_ROWS = 65_536

SOURCES = (("corpus", "doc_id"), ("queries", "query_id"))


def chunks() -> Iterator[pa.Table]:
    """Tables of CHUNK_ROWS texts (source, id, text, key) over the corpus, then the queries, in ingest order."""

    def rows() -> Iterator[pa.Table]:
        for name, id_column in SOURCES:
            for batch in artifacts.iter_batches(INGESTED / name, CHUNK_ROWS, [id_column, "text"]):
                yield pa.table(
                    {
                        "source": pa.array([name] * batch.num_rows),
                        "id": batch[id_column],
                        "text": batch["text"],
                        "key": pa.array(row_keys(batch["text"]), pa.uint64()),
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


def main() -> None:
    with stage("embed") as log:
        config = params.load("embed")
        cache, encode, checkpoint_rows, fingerprint = scoring.embedder(config)
        started, embedded, cached_before = time.perf_counter(), 0, len(cache)
        for chunk in chunks():
            embedded += fill(cache, chunk, encode, ["vector", "truncated"], checkpoint_rows)[0]
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
        truncated = dict.fromkeys((name for name, _ in SOURCES), 0)
        with artifacts.ArtifactWriter(EMBEDDINGS, config, inputs) as out:
            for chunk in chunks():
                vectors, cut = cache.lookup(chunk["key"].to_numpy())
                vectors_schema = schema.embeddings(vectors.shape[1], config.model, fingerprint)
                for name, _ in SOURCES:
                    rows = pc.equal(chunk["source"], name).to_numpy(zero_copy_only=False)
                    truncated[name] += int(cut[rows].sum())
                    table = pa.table(
                        {"id": chunk["id"].filter(pa.array(rows)), "vector": schema.vectors_column(vectors[rows])}
                    )
                    if table.num_rows:
                        out.write(name, table, vectors_schema)
            for name, count in truncated.items():  # in the manifest: texts cut to the model's token limit
                out.describe(name, truncated=count)
            log.info(
                "wrote %d docs and %d queries; texts truncated to the model's limit: %s",
                out.rows("corpus"),
                out.rows("queries"),
                truncated,
            )


if __name__ == "__main__":
    main()
