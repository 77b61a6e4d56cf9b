"""DVC stage `export`: filtered negatives -> data/export/<format>/ parts, card, manifest; metrics/export.json."""

import json

import pyarrow.compute as pc

from pipeline import artifacts, export, params, schema
from stages.common import EXPORT, FILTERED, INDEX, INGESTED, METRICS, MINED, stage


def main() -> None:
    with stage("export") as log:
        config = params.load("export")
        num_negatives = params.load("mine").num_negatives
        topics_path = INDEX / "query_topics"
        topics = artifacts.read(topics_path) if topics_path.exists() else schema.TOPICS.empty_table()
        corpus, queries = artifacts.read(INGESTED / "corpus"), artifacts.read(INGESTED / "queries")
        frame = export.triplet_frame(
            corpus, queries, artifacts.read(MINED / "positive_scores"), artifacts.read(FILTERED / "negatives"), topics
        )
        contrast = export.contrast_frame(
            artifacts.read(FILTERED / "edits"), corpus, queries, artifacts.read(INGESTED / "positives"), topics
        )
        inputs = {
            name: artifacts.fingerprint(path)
            for name, path in (("ingested", INGESTED), ("index", INDEX), ("mined", MINED), ("filtered", FILTERED))
        }
        tables = {fmt: export.to_arrow(export.FORMATS[fmt](frame, contrast, num_negatives)) for fmt in config.formats}
        with artifacts.ArtifactWriter(EXPORT, config, inputs, rows_per_part=config.rows_per_part) as out:
            for fmt, table in tables.items():
                out.write(fmt, table)
            hashes = {fmt: manifest["content_hash"] for fmt, manifest in out.seal().items()}
            version = artifacts.params_hash(hashes)
            provenance = {
                "version": version,
                "formats": hashes,
                "rows": {f: t.num_rows for f, t in tables.items()},
                "inputs": inputs,
                "params": {
                    "mine": params.load("mine").__dict__,
                    "generate": params.load("generate").__dict__,
                    "export": config.__dict__,
                },
            }
            out.write_text("_manifest.json", json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
            out.write_text("README.md", export.card(config.name, version, tables, provenance))
        METRICS.mkdir(exist_ok=True)
        stats = {"version": version, "rows": provenance["rows"], "counterfactuals": contrast.height}
        if "triplet" in tables:
            triplets = tables["triplet"]
            stats.update(
                {
                    "queries": len(set(triplets["query_id"].to_pylist())),
                    "mean_pos_score": pc.mean(triplets["pos_score"]).as_py(),
                    "mean_neg_score": pc.mean(triplets["neg_score"]).as_py(),
                }
            )
        (METRICS / "export.json").write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        log.info("export version %s: %s", version, provenance["rows"])


if __name__ == "__main__":
    main()
