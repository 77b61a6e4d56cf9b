"""DVC stage `index`: corpus vectors -> data/index/ (FAISS index, row -> doc id map, k-means topics).

The index needs every corpus vector in memory (that is what an in-memory FAISS index is); this stage is the one
that holds them. An approximate index's recall against exact search is measured on a sample of the queries and
recorded in the `doc_ids` manifest, next to the factory that built it.
"""

import time

import pyarrow as pa

from pairforge.common import EMBEDDINGS, INDEX, stage
from pairforge.pipeline import artifacts, index, params, schema


def main() -> None:
    with stage("index", INDEX) as log:
        config = params.load("index")
        docs = artifacts.read(EMBEDDINGS / "corpus")
        queries = artifacts.read(EMBEDDINGS / "queries")
        doc_vectors = schema.vectors_matrix(docs["vector"])
        query_vectors = schema.vectors_matrix(queries["vector"])
        started = time.perf_counter()
        built, factory = index.build(doc_vectors, config)
        facts = index.facts(built, factory, time.perf_counter() - started, doc_vectors, query_vectors, config)
        log.info("index: %s", facts)
        with artifacts.ArtifactWriter(INDEX, config, {"embeddings": artifacts.fingerprint(EMBEDDINGS)}) as out:
            index.write(built, str(out.tmp / "index.faiss"))
            out.write("doc_ids", pa.table({"doc_id": docs["id"]}))
            out.describe("doc_ids", index=facts)
            if config.topics:
                kmeans = index.topics(doc_vectors, config)
                out.write("doc_topics", index.assign(kmeans, docs["id"], doc_vectors))
                out.write("query_topics", index.assign(kmeans, queries["id"], query_vectors))
                log.info("%d k-means topics", kmeans.k)


if __name__ == "__main__":
    main()
