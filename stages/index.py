"""DVC stage `index`: corpus vectors -> data/index/ (FAISS index, row -> doc id map, k-means topics).

The corpus's vectors are streamed from the embeddings' Parquet, never held whole: quantisers and topics train on
seeded samples, vectors are added a chunk at a time, and an index of more than `index.shard_rows` vectors is
written as shards, one at a time or `index.build_actors` at a time by Ray actors (pipeline/sharded.py). An
approximate index's search setting (nprobe / efSearch) is raised until its recall@10 against exact search on a
sample of the queries reaches `index.target_recall`; what it reached is recorded in the `doc_ids` manifest, next to
the factory that built it.
"""

import time

import pyarrow as pa

from pairforge.common import EMBEDDINGS, INDEX, stage
from pairforge.pipeline import artifacts, index, params, progress, schema, sharded


def main() -> None:
    with stage("index", INDEX) as log:
        config = params.load("index")
        corpus = EMBEDDINGS / "corpus"
        count, dim = sharded.shape(corpus)
        queries = artifacts.read(EMBEDDINGS / "queries")
        query_vectors = schema.vectors_matrix(queries["vector"])
        started = time.perf_counter()
        template, factory = sharded.trained(corpus, count, dim, config)
        kmeans = None
        if config.topics and count:
            k = index.topic_count(count, config)
            kmeans = index.topics(sharded.take(corpus, index.topic_rows(count, config, k)), config, k)
        with artifacts.ArtifactWriter(INDEX, config, {"embeddings": artifacts.fingerprint(EMBEDDINGS)}) as out:
            shards = sharded.writer(template, count, config, out.tmp)
            for chunk in progress.tracked(sharded.chunks(corpus, ("id", "vector")), f"{factory}: add", count):
                vectors = schema.vectors_matrix(chunk["vector"])
                shards.add(vectors)
                out.write("doc_ids", pa.table({"doc_id": chunk["id"]}))
                if kmeans is not None:
                    out.write("doc_topics", index.assign(kmeans, chunk["id"], vectors))
            shards.close()
            paths = [out.tmp / name for name in shards.names]
            facts = sharded.facts(paths, factory, time.perf_counter() - started, corpus, query_vectors, config)
            log.info("index: %s", facts)
            out.describe("doc_ids", index=facts)
            if kmeans is not None:
                out.write("query_topics", index.assign(kmeans, queries["id"], query_vectors))
                log.info("%d k-means topics", kmeans.k)


if __name__ == "__main__":
    main()
