"""DVC stage `ingest`: the configured corpus -> data/ingested/{corpus,queries,positives,rejections}."""

from pairforge.common import INGESTED, stage
from pairforge.pipeline import artifacts, ingest, params


def main() -> None:
    with stage("ingest", INGESTED) as log:
        config = params.load("ingest")
        tables = ingest.ingest(config)
        with artifacts.ArtifactWriter(INGESTED, config, ingest.fingerprints(config)) as out:
            for name, table in tables.items():
                out.write(name, table)
        reasons = tables["rejections"]["reason"].to_pylist()
        log.info(
            "corpus %d docs, %d queries, %d positives; %d duplicate texts merged, %d bad rows skipped",
            *(tables[n].num_rows for n in ("corpus", "queries", "positives")),
            reasons.count("duplicate_text"),
            reasons.count("bad_row"),
        )


if __name__ == "__main__":
    main()
