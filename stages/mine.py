"""DVC stage `mine`: query vectors + index + positives -> data/mined/{candidates,negatives,positive_scores}."""

import collections

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, embed, ledger, mine, params, runtime
from stages.common import EMBEDDINGS, INDEX, INGESTED, MINED, doc_topics, stage


def query_table() -> tuple[pa.Table, pa.Table, list[str]]:
    """Queries in ingest order with their vector, known-positive index rows, and hardest positive's score."""
    doc_ids = artifacts.read(INDEX / "doc_ids")["doc_id"].to_pylist()
    row_of = {doc_id: row for row, doc_id in enumerate(doc_ids)}
    positives = artifacts.read(INGESTED / "positives")
    order = artifacts.read(INGESTED / "queries", ["query_id"])["query_id"].to_pylist()
    queries = artifacts.read(EMBEDDINGS / "queries")
    query_vectors = dict(zip(queries["id"].to_pylist(), embed.to_numpy(queries["vector"])))
    docs = artifacts.read(EMBEDDINGS / "corpus")
    needed = set(positives["doc_id"].to_pylist())
    doc_vectors = {d: v for d, v in zip(docs["id"].to_pylist(), embed.to_numpy(docs["vector"])) if d in needed}
    similarity = [
        float(np.dot(query_vectors[q], doc_vectors[d]))
        for q, d in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist())
    ]
    positive_scores = pa.table(
        {"query_id": positives["query_id"], "doc_id": positives["doc_id"], "score": pa.array(similarity, pa.float32())}
    )
    rows, hardest = collections.defaultdict(list), {}
    for q, d, s in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist(), similarity):
        rows[q].append(row_of[d])
        hardest[q] = min(s, hardest.get(q, s))
    table = pa.table(
        {
            "query_id": order,
            "vector": embed.vectors_column(np.stack([query_vectors[q] for q in order])),
            "pos_score": pa.array([hardest[q] for q in order], pa.float32()),
            "positive_rows": pa.array([rows[q] for q in order], pa.list_(pa.int64())),
        }
    )
    return table, positive_scores, doc_ids


def main() -> None:
    with stage("mine") as log:
        config = params.load("mine")
        index_config = params.load("index")
        queries, positive_scores, doc_ids = query_table()
        topics = doc_topics()
        index_bytes = np.fromfile(INDEX / "index.faiss", dtype=np.uint8)
        worker_args = {"index_bytes": index_bytes, "doc_ids": doc_ids, "params": config, "index_params": index_config}
        inputs = {
            name: artifacts.fingerprint(path)
            for name, path in (("ingested", INGESTED), ("embeddings", EMBEDDINGS), ("index", INDEX))
        }
        reasons, served = collections.Counter(), set()
        with artifacts.ArtifactWriter(MINED, config, inputs) as out:
            out.write("positive_scores", positive_scores)
            for candidates in runtime.map_batches(
                queries, mine.MineShard, worker_args, runtime.Resources(), rows_per_task=config.query_batch_size
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
