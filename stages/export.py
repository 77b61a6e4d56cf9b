"""DVC stage `export`: filtered negatives -> data/export/<format>/ (train; dev/ when held out) parts, the dataset
card and manifest; metrics/export.json and plots/ for DVC."""

import json

from pairforge.common import (
    DATA,
    EMBEDDINGS,
    EXPORT,
    FILTERED,
    INDEX,
    INGESTED,
    METRICS,
    MINED,
    PAIRS,
    PLOTS,
    fingerprints,
    stage,
)
from pairforge.pipeline import artifacts, card, embed, export, ledger, params, report


def main() -> None:
    with stage("export", EXPORT) as log:
        config, mine_config, generate_config = params.load("export"), params.load("mine"), params.load("generate")
        # The card names the source, the encoder (at the precision it ran) and the filter's thresholds the data was
        # built with.
        card_sections = {name: params.load(name).__dict__ for name in ("ingest", "pairs", "filter")}
        card_sections["embed"] = embed.as_embedded(params.load("embed"), EMBEDDINGS).__dict__
        frames = export.frames(INGESTED, PAIRS, INDEX, MINED, FILTERED, config.promote_false_negatives)
        inputs = fingerprints(ingested=INGESTED, pairs=PAIRS, index=INDEX, mined=MINED, filtered=FILTERED)
        with artifacts.ArtifactWriter(EXPORT, config, inputs, rows_per_part=config.rows_per_part) as out:
            written = []
            for part in export.parts(frames, MINED / "candidates", config, mine_config.num_negatives):
                out.write(part.path, part.table)
                written.append(part)
            hashes = {name: manifest["content_hash"] for name, manifest in out.seal().items()}
            version = artifacts.params_hash(hashes)
            rows, plans = export.tally(written)
            provenance = {
                "version": version,
                "formats": hashes,
                "rows": rows,
                "batches": plans,
                "inputs": inputs,
                "false_negatives": export.false_negatives(FILTERED),
                "short_queries": export.short_queries(FILTERED),
                "index": export.index_facts(INDEX),
                "teacher": frames.teacher,
                "promoted": frames.promoted,
                "pairs": export.pair_kinds(frames.positives),
                "params": {
                    **card_sections,
                    "mine": mine_config.__dict__,
                    "generate": generate_config.__dict__,
                    "export": config.__dict__,
                },
            }
            tables = {}
            for part in written:
                tables.setdefault(part.format, {})[part.split] = part.table
            out.write_text("_manifest.json", json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
            out.write_text("README.md", card.card(config.name, version, tables, provenance, out.tmp))
            if frames.promoted:
                out.write_text("promoted-qrels.tsv", export.qrels_delta(export.promoted(FILTERED)))
        scores = report.scores(DATA)
        # Each file is replaced whole (a kill leaves the previous one); `version` ties them to the export.
        artifacts.write_text_atomically(PLOTS / "scores.csv", report.histogram(scores).write_csv())
        artifacts.write_text_atomically(PLOTS / "rejections.csv", ledger.summary(DATA, samples=0)[0].write_csv())
        stats = export.metrics(DATA, scores, version, written, frames)
        artifacts.write_text_atomically(METRICS / "export.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
        headline = export.headline(stats)
        artifacts.write_text_atomically(METRICS / "headline.json", json.dumps(headline, indent=2) + "\n")
        log.info("export version %s: %s", version, export.summary(rows, plans))


if __name__ == "__main__":
    main()
