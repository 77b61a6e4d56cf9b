"""DVC stage `mine`: query vectors + index + positives -> data/mined/{candidates,negatives,positive_scores}."""

import collections

import pyarrow.compute as pc

from pipeline import artifacts, ledger, mine, params
from pipeline.vocabulary import KEPT, REJECTED
from stages.common import EMBEDDINGS, INDEX, INGESTED, MINED, doc_topics, fingerprints, stage


def main() -> None:
    with stage("mine") as log:
        config = params.load("mine")
        index_config = params.load("index")
        doc_ids = artifacts.read(INDEX / "doc_ids")["doc_id"].combine_chunks()
        queries, positive_scores = mine.query_table(INGESTED, EMBEDDINGS, doc_ids)
        topics = doc_topics()
        inputs = fingerprints(ingested=INGESTED, embeddings=EMBEDDINGS, index=INDEX)
        reasons, served = collections.Counter(), set()
        with artifacts.ArtifactWriter(MINED, config, inputs) as out:
            out.write("positive_scores", positive_scores)
            for candidates in mine.search(queries, INDEX / "index.faiss", doc_ids, config, index_config):
                out.write("candidates", candidates)
                rejected = candidates.filter(pc.equal(candidates["decision"], REJECTED))
                out.write("rejections", ledger.entries("mine", "candidate", rejected, ("score", "pos_score", "rank")))
                negatives = mine.negatives(candidates, topics)
                out.write("negatives", negatives)
                served.update(negatives["query_id"].to_pylist())
                reasons.update(pc.fill_null(candidates["reason"], KEPT).to_pylist())
            log.info(
                "%d queries, %d candidates inspected, %d negatives kept; %d queries without a negative",
                queries.num_rows,
                out.rows("candidates"),
                out.rows("negatives"),
                queries.num_rows - len(served),
            )
        log.info("candidates by reason: %s", dict(sorted(reasons.items())))


if __name__ == "__main__":
    main()
