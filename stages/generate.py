"""DVC stage `generate`: the pairs' queries / positives / sentences -> data/generated/{contrast,attempts,rejections}."""

import collections

from pairforge.common import GENERATED, INGESTED, PAIRS, stage
from pairforge.pipeline import artifacts, params, schema
from pairforge.pipeline.contrast import generate


def main() -> None:
    with stage("generate", GENERATED) as log:
        config = params.load("generate")
        items = generate.sample(generate.source_table(config, INGESTED, PAIRS), config.max_items, config.seed)
        items, too_long, too_long_rejections = generate.within_length(config, items)
        if config.source == "sentences":
            inputs = {"sentences": artifacts.fingerprint(config.sentences_file)}
        else:
            inputs = {"ingested": artifacts.fingerprint(INGESTED), "pairs": artifacts.fingerprint(PAIRS)}
        outcomes = collections.Counter()
        with artifacts.ArtifactWriter(GENERATED, config, inputs) as out:
            for name, table_schema in (
                ("contrast", schema.CONTRAST),
                ("attempts", schema.ATTEMPTS),
                ("rejections", schema.REJECTIONS),
            ):
                out.write(name, table_schema.empty_table())  # each artifact exists, even when nothing is made
            out.write("attempts", too_long)
            out.write("rejections", too_long_rejections)
            outcomes.update(zip(too_long["op"].to_pylist(), too_long["outcome"].to_pylist()))
            if config.rules:
                for contrast, attempts in generate.rule_edits(config, items):
                    out.write("contrast", contrast)
                    out.write("attempts", attempts)
                    outcomes.update(zip(attempts["op"].to_pylist(), attempts["outcome"].to_pylist()))
            if config.llm_backend != "none" and config.llm_max_items:
                sample = items.slice(0, config.llm_max_items)
                contrast, attempts, rejections, made = generate.llm_edits(config, sample)
                log.info("LLM edits: %d made now, %d from the cache", made, attempts.num_rows - made)
                pending = generate.pending(attempts)
                if pending:
                    log.warning(
                        "%d LLM edits pending: the endpoint failed on them after its retries; run the stage again "
                        "(dvc repro -f generate) to ask for exactly those", pending,
                    )  # fmt: skip
                out.describe("attempts", pending=pending)
                out.write("contrast", contrast)
                out.write("attempts", attempts)
                out.write("rejections", rejections)
                outcomes.update(zip(attempts["op"].to_pylist(), attempts["outcome"].to_pylist()))
            log.info("%d source texts (%s); %d edits made", items.num_rows, config.source, out.rows("contrast"))
        for op in dict.fromkeys(op for op, _ in outcomes):
            counts = {outcome: n for (o, outcome), n in outcomes.items() if o == op}
            log.info("  %s: %s", op, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
