"""DVC stage `export`: filtered negatives -> data/export/<format>/ (train; dev/ when held out) parts, the dataset
card and manifest; metrics/export.json."""

import functools
import json

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, batches, card, export, ledger, params, report, schema, split
from stages.common import DATA, EXPORT, FILTERED, INDEX, INGESTED, METRICS, MINED, PLOTS, stage


def main() -> None:
    with stage("export") as log:
        config = params.load("export")
        num_negatives = params.load("mine").num_negatives
        topics_path = INDEX / "query_topics"
        topics = artifacts.read(topics_path) if topics_path.exists() else schema.TOPICS.empty_table()
        queries, positives = artifacts.read(INGESTED / "queries"), artifacts.read(INGESTED / "positives")
        negatives = artifacts.read(FILTERED / "negatives")
        # Only the documents the dataset holds (positives and kept negatives), streamed out of the corpus.
        used = pc.unique(pa.concat_arrays([pc.unique(positives["doc_id"]), pc.unique(negatives["doc_id"])]))
        corpus = artifacts.select(INGESTED / "corpus", "doc_id", used)
        frame = export.triplet_frame(corpus, queries, artifacts.read(MINED / "positive_scores"), negatives, topics)
        contrast = export.contrast_frame(artifacts.read(FILTERED / "edits"), corpus, queries, positives, topics)
        pairs = list(zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist()))
        known = {query_id: set(docs) for query_id, docs in batches.documents_by_query(positives).items()}
        dev = pa.array(sorted(split.dev_queries(pairs, config.dev_fraction, config.seed)), pa.string())
        query_group = None
        if config.batching == "b3":
            ranks = artifacts.read(MINED / "candidates", ["query_id", "doc_id", "rank"])
            community = max(1, config.batch_size // config.b3_communities_per_batch)
            query_group = batches.b3_query_groups(
                ranks, positives, config.b3_skip, config.b3_window, community, config.b3_communities_per_batch,
                config.seed,
            )  # fmt: skip
        mixed = functools.partial(export.mixed, counterfactual_share=config.counterfactual_share)
        builders = {**export.FORMATS, "mixed": mixed}
        inputs = {
            name: artifacts.fingerprint(path)
            for name, path in (("ingested", INGESTED), ("index", INDEX), ("mined", MINED), ("filtered", FILTERED))
        }
        tables: dict[str, dict[str, pa.Table]] = {}
        plans: dict[str, dict[str, dict]] = {}
        with artifacts.ArtifactWriter(EXPORT, config, inputs, rows_per_part=config.rows_per_part) as out:
            for fmt in config.formats:
                table = export.to_arrow(builders[fmt](frame, contrast, num_negatives))
                in_dev = pc.fill_null(pc.is_in(table["query_id"], dev), False)
                parts = {"train": table.filter(pc.invert(in_dev))}
                if config.dev_fraction:
                    parts["dev"] = table.filter(in_dev)
                for name, part in parts.items():
                    shape = export.batch_rows(fmt, part, known)
                    part, plan = batches.plan(part, shape, config.batching, config.batch_size, config.seed, query_group)
                    out.write(fmt if name == "train" else f"{fmt}/{name}", part)
                    tables.setdefault(fmt, {})[name] = part
                    if plan:
                        plans.setdefault(fmt, {})[name] = plan
            hashes = {name: manifest["content_hash"] for name, manifest in out.seal().items()}
            version = artifacts.params_hash(hashes)
            rows = {fmt: {name: t.num_rows for name, t in parts.items()} for fmt, parts in tables.items()}
            provenance = {
                "version": version,
                "formats": hashes,
                "rows": rows,
                "batches": plans,
                "inputs": inputs,
                "params": {
                    "mine": params.load("mine").__dict__,
                    "generate": params.load("generate").__dict__,
                    "export": config.__dict__,
                },
            }
            out.write_text("_manifest.json", json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
            out.write_text("README.md", card.card(config.name, version, tables, provenance))
        found = report.scores(DATA)
        # Each file is replaced whole (a kill leaves the previous one); `version` ties them to the export.
        artifacts.write_text_atomically(PLOTS / "scores.csv", report.histogram(found).write_csv())
        artifacts.write_text_atomically(PLOTS / "rejections.csv", ledger.summary(DATA, samples=0)[0].write_csv())
        stats = {
            "version": version,
            "rows": rows,
            "batches": plans,
            "counterfactuals": contrast.height,
            **report.metrics(DATA, found),
        }
        if "triplet" in tables:
            triplets = tables["triplet"]["train"]
            stats.update(
                {
                    "queries": len(set(triplets["query_id"].to_pylist())),
                    "mean_pos_score": pc.mean(triplets["pos_score"]).as_py(),
                    "mean_neg_score": pc.mean(triplets["neg_score"]).as_py(),
                }
            )
        artifacts.write_text_atomically(METRICS / "export.json", json.dumps(stats, indent=2, sort_keys=True) + "\n")
        log.info("export version %s: %s; in-batch conflicts %s", version, rows, plans)


if __name__ == "__main__":
    main()
