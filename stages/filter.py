"""DVC stage `filter`: mined candidates -> data/filtered/{negatives,judged,edits,rejections}, false negatives caught.

The mined candidates stream through in shards of whole queries; each shard reads only its own documents' texts
and vectors, so the stage's memory follows `filter.query_shard`, not the corpus.
"""

import collections

from pipeline import artifacts, params, schema
from pipeline.filtering import edits, negatives
from stages.common import EMBEDDINGS, FILTERED, GENERATED, INGESTED, MINED, doc_topics, stage


def main() -> None:
    with stage("filter") as log:
        config, embed_config = params.load("filter"), params.load("embed")
        num_negatives = params.load("mine").num_negatives
        queries = artifacts.read(INGESTED / "queries", ["query_id", "text"])
        query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
        positives = artifacts.read(INGESTED / "positives", ["query_id", "doc_id"])
        topics = doc_topics()
        judged_edits = edits.validate_edits(config, embed_config, artifacts.read(GENERATED / "contrast"))
        scores = edits.context_scores(judged_edits, positives, query_text, INGESTED / "corpus", embed_config)
        judged_edits = judged_edits.append_column("context_scores", scores)
        inputs = {
            name: artifacts.fingerprint(path)
            for name, path in (
                ("ingested", INGESTED),
                ("embeddings", EMBEDDINGS),
                ("mined", MINED),
                ("generated", GENERATED),
            )
        }
        reasons, per_query = collections.Counter(), collections.Counter()
        with artifacts.ArtifactWriter(FILTERED, config, inputs) as out:
            # Mine wrote each query's candidates together, in ingest order: shards of whole queries, in order.
            for candidates in artifacts.iter_groups(MINED / "candidates", "query_id", config.query_shard):
                shard = negatives.judge_shard(
                    candidates, positives, query_text, INGESTED / "corpus", EMBEDDINGS / "corpus", topics,
                    num_negatives, config,
                )  # fmt: skip
                out.write("negatives", shard.negatives)
                out.write("judged", shard.judged)
                out.write("rejections", shard.rejections)
                reasons.update(shard.rejections["reason"].to_pylist())
                per_query.update(shard.negatives["query_id"].to_pylist())
            if not out.rows("judged"):  # no candidates at all: the artifacts still exist, with their schemas
                out.write("negatives", schema.NEGATIVES.empty_table())
                out.write("judged", schema.JUDGED.empty_table())
            edit_rejections = edits.rejections(judged_edits)
            out.write("edits", judged_edits)
            out.write("rejections", edit_rejections)
            judged_rows, kept_rows = out.rows("judged"), out.rows("negatives")
        short = sum(1 for q in query_text if per_query[q] < num_negatives)
        edit_reasons = collections.Counter(edit_rejections["reason"].to_pylist())
        log.info(
            "validated %d generated edits: %d kept, %d rejected (%s)",
            judged_edits.num_rows,
            judged_edits.num_rows - edit_rejections.num_rows,
            edit_rejections.num_rows,
            ", ".join(f"{r}: {c}" for r, c in sorted(edit_reasons.items())),
        )
        log.info(
            "judged %d candidates: %d kept, %d rejected (%s); %d queries short of %d negatives",
            judged_rows,
            kept_rows,
            judged_rows - kept_rows,
            ", ".join(f"{r}: {c}" for r, c in sorted(reasons.items())),
            short,
            num_negatives,
        )


if __name__ == "__main__":
    main()
