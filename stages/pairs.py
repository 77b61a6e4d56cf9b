"""DVC stage `pairs`: ingested pairs (+ generated queries, round-trip filtered) -> data/pairs/{queries,positives,
written,rejections}."""

import collections

from pairforge.common import INGESTED, PAIRS, fingerprints, stage
from pairforge.pipeline import artifacts, embed, pairs, params, schema


def main() -> None:
    with stage("pairs", PAIRS) as log:
        config = params.load("pairs")
        queries, positives = pairs.judged(INGESTED)
        outcomes, generated, asked = collections.Counter(), 0, 0
        with artifacts.ArtifactWriter(PAIRS, config, fingerprints(ingested=INGESTED)) as out:
            out.write("queries", queries.cast(schema.QUERIES))
            out.write("positives", positives.cast(schema.PAIR_POSITIVES))
            out.write("written", schema.WRITTEN_QUERIES.empty_table())
            out.write("rejections", schema.REJECTIONS.empty_table())
            if config.styles:
                embedding = embed.resolved(params.load("embed"), embed.sample(INGESTED))
                judge = params.load("filter")
                judge = judge if judge.cross_encoder else None
                for found in pairs.generate(config, embedding, INGESTED, (queries, positives), judge):
                    for name in ("queries", "positives", "written", "rejections"):
                        out.write(name, getattr(found, name))
                    decisions = zip(found.written["decision"].to_pylist(), found.written["reason"].to_pylist())
                    outcomes.update(reason or decision for decision, reason in decisions)
                    generated, asked = generated + found.positives.num_rows, asked + found.asked
                log.info("generated queries: %d asks of the LLM now (the rest from its cache); %s", asked,
                         dict(outcomes.most_common()))  # fmt: skip
                out.describe("positives", generated_by=f"{config.llm_backend}:{config.llm_model}",
                             encoder=embedding.model)  # fmt: skip
            pairs.require_pairs(positives.num_rows, generated, outcomes if config.styles else None)
        log.info("%d judged pairs, %d generated pairs kept", positives.num_rows, generated)


if __name__ == "__main__":
    main()
