"""DVC stage `index`: corpus vectors -> data/index/ (FAISS index, row -> doc id map, k-means topics)."""

import time

import pyarrow as pa

from pipeline import artifacts, embed, index, params
from stages.common import EMBEDDINGS, INDEX, stage


def main() -> None:
    with stage("index") as log:
        config = params.load("index")
        docs = artifacts.read(EMBEDDINGS / "corpus")
        queries = artifacts.read(EMBEDDINGS / "queries")
        doc_vectors = embed.to_numpy(docs["vector"])
        started = time.perf_counter()
        built = index.build(doc_vectors, config)
        log.info(
            "index %s over %d vectors built in %.1f s", config.factory, built.ntotal, time.perf_counter() - started
        )
        with artifacts.ArtifactWriter(INDEX, config, {"embeddings": artifacts.fingerprint(EMBEDDINGS)}) as out:
            index.write(built, str(out.tmp / "index.faiss"))
            out.write("doc_ids", pa.table({"doc_id": docs["id"]}))
            if config.topics:
                kmeans = index.topics(doc_vectors, config)
                out.write("doc_topics", index.assign(kmeans, docs["id"], doc_vectors))
                out.write("query_topics", index.assign(kmeans, queries["id"], embed.to_numpy(queries["vector"])))
                log.info("%d k-means topics", kmeans.k)


if __name__ == "__main__":
    main()
