"""DVC stage `pairs`: ingested pairs (+ generated queries, round-trip filtered) -> data/pairs/{queries,positives,
written,rejections}."""

import collections

from pairforge.common import INGESTED, PAIRS, fingerprints, stage
from pairforge.pipeline import artifacts, embed, pairs, params, schema


def main() -> None:
    with stage("pairs", PAIRS) as log:
        config = params.load("pairs")
        queries, positives = pairs.judged(INGESTED)
        with artifacts.ArtifactWriter(PAIRS, config, fingerprints(ingested=INGESTED)) as out:
            out.write("queries", queries)
            out.write("positives", positives.cast(schema.PAIR_POSITIVES))
            found = None
            if config.styles:
                embedding = embed.resolved(params.load("embed"), embed.sample(INGESTED))
                judge = params.load("filter")
                judge = judge if judge.cross_encoder else None
                found = pairs.generate(config, embedding, INGESTED, queries, judge)
                outcomes = collections.Counter(r or d for d, r in zip(found.written["decision"].to_pylist(),
                                                                      found.written["reason"].to_pylist()))  # fmt: skip
                log.info("generated queries: %d asks of the LLM now (the rest from its cache); %s", found.asked,
                         dict(outcomes.most_common()))  # fmt: skip
            pairs.require_pairs(positives.num_rows, found)
            if found:
                out.write("queries", found.queries)
                out.write("positives", found.positives)
                out.describe("positives", generated_by=f"{config.llm_backend}:{config.llm_model}",
                             encoder=embedding.model)  # fmt: skip
            written = found.written if found else schema.WRITTEN_QUERIES.empty_table()
            out.write("written", written)
            out.write("rejections", found.rejections if found else schema.REJECTIONS.empty_table())
        log.info(
            "%d judged pairs, %d generated pairs kept", positives.num_rows, found.positives.num_rows if found else 0
        )


if __name__ == "__main__":
    main()
