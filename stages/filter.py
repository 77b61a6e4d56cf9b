"""DVC stage `filter`: mined candidates -> data/filtered/{negatives,judged,teacher,promoted,edits,rejections},
false negatives caught.

The mined candidates stream through in shards of whole queries; each shard reads only its own documents' texts
and vectors, so the stage's memory follows `filter.query_shard`, not the corpus.
"""

import collections

import pyarrow.compute as pc

from pairforge.common import EMBEDDINGS, FILTERED, GENERATED, INGESTED, MINED, PAIRS, doc_topics, fingerprints, stage
from pairforge.pipeline import artifacts, embed, params, schema
from pairforge.pipeline.filtering import calibration, edits, judges, negatives, tuning


def main() -> None:
    with stage("filter", FILTERED) as log:
        config = params.load("filter")
        embed_config = embed.as_embedded(params.load("embed"), EMBEDDINGS)  # vectors at the embed stage's precision
        mine_config = params.load("mine")
        num_negatives = mine_config.num_negatives
        queries = artifacts.read(PAIRS / "queries", ["query_id", "text"])
        query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
        positives = artifacts.read(PAIRS / "positives", ["query_id", "doc_id"])
        topics = doc_topics()
        judged_edits = edits.validate_edits(config, embed_config, artifacts.read(GENERATED / "contrast"))
        found = edits.contexts(judged_edits, positives, query_text, INGESTED / "corpus")
        judged_edits = edits.check_support(config, embed_config, judged_edits, found)
        judged_edits = judged_edits.append_column(
            "context_scores", edits.context_scores(judged_edits, found, embed_config)
        )
        inputs = fingerprints(ingested=INGESTED, pairs=PAIRS, embeddings=EMBEDDINGS, mined=MINED, generated=GENERATED)
        # The hidden-positive protocol on this dataset's own multi-positive queries: the model of unlabelled
        # positives learned from them, its false-negative rate, and with filter.target_fn_rate the setting that
        # meets it, which every query then gets.
        found = tuning.calibrate(MINED, INGESTED / "corpus", EMBEDDINGS / "corpus", positives, query_text, config,
                                 mine_config)  # fmt: skip
        positive_scores = artifacts.read(MINED / "positive_scores")
        mined_short = artifacts.read(MINED / "short_queries")
        reasons, short, judged_queries, proposed = collections.Counter(), collections.Counter(), set(), 0
        with artifacts.ArtifactWriter(FILTERED, config, inputs) as out:
            empty = {"negatives": schema.NEGATIVES, "judged": schema.JUDGED, "short_queries": schema.SHORT_QUERIES,
                     "teacher": schema.TEACHER, "promoted": schema.PROMOTED}  # fmt: skip
            for name, table_schema in empty.items():
                out.write(name, table_schema.empty_table())  # each artifact exists, even with no candidates
            # Mine wrote each query's candidates together, in ingest order: shards of whole queries, in order.
            for candidates in artifacts.iter_groups(MINED / "candidates", "query_id", config.query_shard):
                shard = negatives.judge_shard(
                    found.candidates(candidates, positives, positive_scores), positives, query_text,
                    INGESTED / "corpus", EMBEDDINGS / "corpus", topics, num_negatives, found.params, mined_short,
                    found.likely,
                )  # fmt: skip
                out.write("negatives", shard.negatives)
                out.write("judged", shard.judged)
                out.write("rejections", shard.rejections)
                out.write("short_queries", shard.short)
                out.write("teacher", shard.teacher)
                out.write("promoted", shard.promoted)
                reasons.update(shard.rejections["reason"].to_pylist())
                short.update(shard.short["reason"].to_pylist())
                judged_queries.update(pc.unique(shard.judged["query_id"]).to_pylist())
                proposed += shard.promoted.num_rows
            carried = negatives.never_judged(mined_short, judged_queries)
            out.write("short_queries", carried)
            short.update(carried["reason"].to_pylist())
            out.describe("teacher", cross_encoder=config.cross_encoder)
            out.describe("promoted", above=config.promote_above, judges=judges.names(config))
            out.write("calibration", found.judged)
            out.describe("calibration", false_negatives=found.report)
            edit_rejections = edits.rejections(judged_edits)
            out.write("edits", judged_edits)
            out.write("rejections", edit_rejections)
            judged_rows, kept_rows = out.rows("judged"), out.rows("negatives")
        edit_reasons = collections.Counter(edit_rejections["reason"].to_pylist())
        log.info(
            "validated %d generated edits: %s; rejected by reason: %s",
            judged_edits.num_rows,
            edits.decisions(judged_edits),
            ", ".join(f"{r}: {c}" for r, c in sorted(edit_reasons.items())),
        )
        log.info(
            "judged %d candidates: %d kept, %d rejected (%s); %d queries short of %d negatives (%s)",
            judged_rows,
            kept_rows,
            judged_rows - kept_rows,
            ", ".join(f"{r}: {c}" for r, c in sorted(reasons.items())),
            sum(short.values()),
            num_negatives,
            dict(short),
        )
        log.info("false negatives, measured on hidden positives: %s", calibration.summary(found.report))
        log.info("proposed %d extra positives (judges at least %s sure): data/filtered/promoted", proposed,
                 config.promote_above)  # fmt: skip


if __name__ == "__main__":
    main()
