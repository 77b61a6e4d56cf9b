"""DVC stage `embed`: ingested corpus and queries -> data/embeddings/{corpus,queries}, in a Ray actor pool."""

import time

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, embed, models, params, runtime, schema
from stages.common import EMBEDDINGS, INGESTED, stage


def texts() -> pa.Table:
    corpus = artifacts.read(INGESTED / "corpus", ["doc_id", "text"]).rename_columns(["id", "text"])
    queries = artifacts.read(INGESTED / "queries", ["query_id", "text"]).rename_columns(["id", "text"])
    return pa.concat_tables(
        [
            corpus.append_column("kind", pa.array(["doc"] * corpus.num_rows)),
            queries.append_column("kind", pa.array(["query"] * queries.num_rows)),
        ]
    )


def main() -> None:
    with stage("embed") as log:
        config = params.load("embed")
        folder = models.resolve(config.model)
        fingerprint = models.fingerprint(folder)
        items = embed.length_sorted(texts())
        worker_args = {
            "model": str(folder),
            "max_length": config.max_length,
            "batch_size": config.batch_size,
            "device": config.device,
        }
        resources = runtime.Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)
        inputs = {"ingested": artifacts.fingerprint(INGESTED), "model": fingerprint}
        started, truncated = time.perf_counter(), 0
        with artifacts.ArtifactWriter(EMBEDDINGS, config, inputs) as out:
            for batch in runtime.map_batches(
                items, embed.EmbedBatch, worker_args, resources, rows_per_task=config.batch_size * 2
            ):
                truncated += pc.sum(batch["truncated"]).as_py() or 0
                vectors_schema = schema.embeddings(
                    batch.schema.field("vector").type.list_size, config.model, fingerprint
                )
                for kind, name in (("doc", "corpus"), ("query", "queries")):
                    rows = batch.filter(pc.equal(batch["kind"], kind)).select(["id", "vector"])
                    out.write(name, rows, vectors_schema)
            seconds = time.perf_counter() - started
            log.info(
                "embedded %d docs and %d queries in %.1f s (%.1f texts/s); %d texts truncated to the model's limit",
                out.rows("corpus"),
                out.rows("queries"),
                seconds,
                items.num_rows / seconds,
                truncated,
            )


if __name__ == "__main__":
    main()
