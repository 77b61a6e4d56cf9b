"""DVC stage `mine`: query vectors + index + the pairs' positives -> data/mined/{candidates,negatives,
positive_scores}."""

import collections

import pyarrow.compute as pc

from pairforge.common import EMBEDDINGS, INDEX, MINED, PAIRS, doc_topics, fingerprints, stage
from pairforge.pipeline import artifacts, mine, params, schema, sharded


def main() -> None:
    with stage("mine", MINED) as log:
        config = params.load("mine")
        doc_ids = artifacts.read(INDEX / "doc_ids")["doc_id"].combine_chunks()
        queries, positive_scores = mine.query_table(PAIRS, EMBEDDINGS, doc_ids)
        topics = doc_topics()
        inputs = fingerprints(pairs=PAIRS, embeddings=EMBEDDINGS, index=INDEX)
        reasons, seen, short = collections.Counter(), set(), collections.Counter()
        with artifacts.ArtifactWriter(MINED, config, inputs) as out:
            out.write("positive_scores", positive_scores)
            out.write("short_queries", schema.SHORT_QUERIES.empty_table())
            for candidates in mine.search(queries, sharded.files(INDEX), doc_ids, config):
                out.write("candidates", candidates)
                out.write("rejections", mine.rejections(candidates))
                out.write("negatives", mine.negatives(candidates, topics))
                shortfall = mine.short_queries(candidates, config)
                out.write("short_queries", shortfall)
                short.update(shortfall["reason"].to_pylist())
                seen.update(pc.unique(candidates["query_id"]).to_pylist())
                reasons.update(mine.outcomes(candidates))
            unseen = mine.without_candidates([q for q in queries["query_id"].to_pylist() if q not in seen])
            out.write("short_queries", unseen)
            short.update(unseen["reason"].to_pylist())
            log.info(
                "%d queries, %d candidates inspected, %d negatives kept; %d queries short of %d negatives (%s)",
                queries.num_rows,
                out.rows("candidates"),
                out.rows("negatives"),
                out.rows("short_queries"),
                config.num_negatives,
                dict(short),
            )
        log.info("candidates by reason: %s", dict(sorted(reasons.items())))


if __name__ == "__main__":
    main()
