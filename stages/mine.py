"""DVC stage `mine`: query vectors + index + positives -> data/mined/{candidates,negatives,positive_scores}."""

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, ledger, mine, params, runtime, schema
from stages.common import EMBEDDINGS, INDEX, INGESTED, MINED, doc_topics, stage


def positive_vectors(doc_ids: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(ids, vectors) of the given documents, streamed from the corpus embeddings rather than read whole."""
    found = [
        batch.filter(pc.is_in(batch["id"], doc_ids))
        for batch in artifacts.iter_batches(EMBEDDINGS / "corpus", 65_536, ["id", "vector"])
    ]
    table = pa.concat_tables(found)
    return table["id"], schema.vectors_matrix(table["vector"])


def query_table() -> tuple[pa.Table, pa.Table, pa.Array]:
    """Queries in ingest order with their vector, known-positive index rows, and hardest positive's score.

    Holds the query vectors and the positives' vectors, never the whole corpus's: the index stage is the one
    that needs every corpus vector.
    """
    doc_ids = artifacts.read(INDEX / "doc_ids")["doc_id"].combine_chunks()
    positives = artifacts.read(INGESTED / "positives", ["query_id", "doc_id"])
    order = artifacts.read(INGESTED / "queries", ["query_id"])["query_id"]
    queries = artifacts.read(EMBEDDINGS / "queries")
    query_vectors = schema.vectors_matrix(queries["vector"])
    positive_ids, positive_matrix = positive_vectors(pc.unique(positives["doc_id"]))
    query_at = pc.index_in(positives["query_id"], queries["id"]).to_numpy()
    doc_at = pc.index_in(positives["doc_id"], positive_ids).to_numpy()
    similarity = np.array([np.dot(query_vectors[q], positive_matrix[d]) for q, d in zip(query_at, doc_at)])
    positive_scores = pa.table(
        {"query_id": positives["query_id"], "doc_id": positives["doc_id"], "score": pa.array(similarity, pa.float32())}
    )
    per_query = (
        pa.table(
            {
                "query_id": positives["query_id"],
                "row": pc.index_in(positives["doc_id"], doc_ids).cast(pa.int64()),
                "score": similarity,
            }
        )
        .group_by("query_id", use_threads=False)  # keeps each query's positives in qrels order
        .aggregate([("row", "list"), ("score", "min")])
    )
    at = pc.index_in(order, per_query["query_id"])
    table = pa.table(
        {
            "query_id": order,
            "vector": schema.vectors_column(query_vectors[pc.index_in(order, queries["id"]).to_numpy()]),
            "pos_score": per_query["score_min"].take(at).cast(pa.float32()),
            "positive_rows": per_query["row_list"].take(at),
        }
    )
    return table, positive_scores, doc_ids


def main() -> None:
    with stage("mine") as log:
        config = params.load("mine")
        index_config = params.load("index")
        queries, positive_scores, doc_ids = query_table()
        topics = doc_topics()
        # Actors memory-map the index file where they can reach it and get the document ids from the object
        # store: at 1M documents, unpickling both into every actor cost several GB.
        worker_args = {
            "index_source": runtime.file_for_workers(INDEX / "index.faiss"),
            "doc_ids": runtime.share(doc_ids),
            "params": config,
            "index_params": index_config,
        }
        inputs = {
            name: artifacts.fingerprint(path)
            for name, path in (("ingested", INGESTED), ("embeddings", EMBEDDINGS), ("index", INDEX))
        }
        reasons, served = collections.Counter(), set()
        with artifacts.ArtifactWriter(MINED, config, inputs) as out:
            out.write("positive_scores", positive_scores)
            for candidates in runtime.map_batches(
                queries,
                mine.MineShard,
                worker_args,
                runtime.Resources(config.actors, 1, config.gpus_per_actor),
                rows_per_task=config.query_batch_size,
            ):
                out.write("candidates", candidates)
                rejected = candidates.filter(pc.equal(candidates["decision"], mine.REJECTED))
                out.write("rejections", ledger.entries("mine", "candidate", rejected, ("score", "pos_score", "rank")))
                negatives = mine.negatives(candidates, topics)
                out.write("negatives", negatives)
                served.update(negatives["query_id"].to_pylist())
                reasons.update(pc.fill_null(candidates["reason"], "kept").to_pylist())
            short = queries.num_rows - len(served)
            log.info(
                "%d queries, %d candidates inspected, %d negatives kept; %d queries without a negative",
                queries.num_rows,
                out.rows("candidates"),
                out.rows("negatives"),
                short,
            )
        log.info("candidates by reason: %s", dict(sorted(reasons.items())))


if __name__ == "__main__":
    main()
