"""Export: the filtered data as trainer-ready tables, per format and split (train, and dev when held out), each
planned into training batches; the dataset's provenance and the figures `dvc metrics` shows."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, batches, formats, report, schema, split
from pairforge.pipeline.params import ExportParams
from pairforge.pipeline.vocabulary import PROMOTED_POSITIVE


@dataclass(frozen=True)
class Frames:
    """What every format is built from: mined triplets and counterfactual rows (polars frames), the positives (with
    the promoted ones when the export uses them), the teacher whose scores the triplets carry (the filter's
    cross-encoder; None without one), and what became of the filter's proposed extra positives."""

    triplets: pl.DataFrame
    contrast: pl.DataFrame
    positives: pa.Table
    query_topics: pa.Table
    teacher: str | None = None
    promoted: dict | None = None


def promoted(filtered: Path) -> pa.Table:
    """The filter's proposed extra positives (`schema.PROMOTED`); none from a filter that predates them."""
    path = filtered / "promoted"
    return artifacts.read(path) if path.exists() else schema.PROMOTED.empty_table()


def with_promoted(positives: pa.Table, scores: pa.Table, proposed: pa.Table) -> tuple[pa.Table, pa.Table]:
    """`positives` (qrels) and `scores` (their model similarity, `mined/positive_scores`) with the proposed pairs
    appended, each after its query's own positives in the triplets' order (relevance 1, the judged similarity)."""
    pairs = {"query_id": proposed["query_id"], "doc_id": proposed["doc_id"]}
    ones = pa.array([1.0] * proposed.num_rows, pa.float32())
    kinds = (
        {"positive_kind": [PROMOTED_POSITIVE] * proposed.num_rows} if "positive_kind" in positives.column_names else {}
    )
    return (
        pa.concat_tables([positives, pa.table({**pairs, "score": ones, **kinds}, schema=positives.schema)]),
        pa.concat_tables([scores, pa.table({**pairs, "score": proposed["score"]}, schema=scores.schema)]),
    )


def pair_kinds(positives: pa.Table) -> dict[str, int]:
    """How many (query, positive) pairs of each kind the dataset holds: judged, generated, promoted."""
    if "positive_kind" not in positives.column_names:
        return {}
    found = pc.value_counts(positives["positive_kind"]).to_pylist()
    return {entry["values"]: entry["counts"] for entry in found}


def frames(ingested: Path, pairs: Path, index: Path, mined: Path, filtered: Path, promote: bool = False) -> Frames:
    """Read the artifacts the export needs; of the corpus, only the documents the dataset holds (positives and
    kept negatives), streamed out of it. `promote`: the filter's proposed extra positives join the positives."""
    topics_path = index / "query_topics"
    topics = artifacts.read(topics_path) if topics_path.exists() else schema.TOPICS.empty_table()
    queries, positives = artifacts.read(pairs / "queries"), artifacts.read(pairs / "positives")
    positive_scores = artifacts.read(mined / "positive_scores")
    proposed = promoted(filtered)
    if promote:
        positives, positive_scores = with_promoted(positives, positive_scores, proposed)
    negatives = artifacts.read(filtered / "negatives")
    used = pc.unique(pa.concat_arrays([pc.unique(positives["doc_id"]), pc.unique(negatives["doc_id"])]))
    corpus = artifacts.select(ingested / "corpus", "doc_id", used)
    teacher_path = filtered / "teacher"
    teacher = artifacts.read(teacher_path) if teacher_path.exists() else schema.TEACHER.empty_table()
    scored = teacher if teacher.num_rows else None
    scores = formats.with_kinds(positive_scores, positives)
    triplets = formats.triplet_frame(corpus, queries, scores, negatives, topics, scored)
    contrast = formats.contrast_frame(artifacts.read(filtered / "edits"), corpus, queries, positives, topics)
    judge = artifacts.manifest(teacher_path).get("cross_encoder") if teacher.num_rows else None
    found = None
    if proposed.num_rows:
        found = artifacts.manifest(filtered / "promoted")
        found = {"proposed": proposed.num_rows, "used": promote, "above": found["above"], "judges": found["judges"]}
    return Frames(triplets, contrast, positives, topics, judge, found)


@dataclass(frozen=True)
class Part:
    """One format's split, its rows in batch order, and its batch plan (None where the format is not batched)."""

    format: str
    split: str
    table: pa.Table
    plan: dict | None

    @property
    def path(self) -> str:
        """Where the part lives in the export folder: `<format>/` for train, `<format>/<split>/` otherwise."""
        return self.format if self.split == "train" else f"{self.format}/{self.split}"


def parts(data: Frames, candidates: Path, config: ExportParams, num_negatives: int) -> Iterator[Part]:
    """Every format of `config` in every split, planned into batches (B3 reads the teacher's ranks from the mined
    `candidates`)."""
    pairs = list(zip(data.positives["query_id"].to_pylist(), data.positives["doc_id"].to_pylist()))
    known = {query_id: set(docs) for query_id, docs in batches.documents_by_query(data.positives).items()}
    dev = pa.array(sorted(split.dev_queries(pairs, config.dev_fraction, config.seed)), pa.string())
    query_group = None
    if config.batching == "b3":
        ranks = artifacts.read(candidates, ["query_id", "doc_id", "rank"])
        community = max(1, config.batch_size // config.b3_communities_per_batch)
        query_group = batches.b3_query_groups(
            ranks, data.positives, config.b3_skip, config.b3_window, community, config.b3_communities_per_batch,
            config.seed,
        )  # fmt: skip
    builders = {**formats.FORMATS, "mixed": formats.mixed_at(config.counterfactual_share)}
    for fmt in config.formats:
        table = formats.to_arrow(builders[fmt](data.triplets, data.contrast, num_negatives))
        in_dev = pc.fill_null(pc.is_in(table["query_id"], dev), False)
        splits = {"train": table.filter(pc.invert(in_dev))}
        if config.dev_fraction:
            splits["dev"] = table.filter(in_dev)
        for name, rows in splits.items():
            shape = formats.batch_rows(fmt, rows, known)
            planned, plan = batches.plan(rows, shape, config.batching, config.batch_size, config.seed, query_group)
            yield Part(fmt, name, planned, plan)


def tally(written: list[Part]) -> tuple[dict, dict]:
    """Rows and batch plans per format and split, as the manifest, the card and the metrics report them."""
    rows, plans = {}, {}
    for part in written:
        rows.setdefault(part.format, {})[part.split] = part.table.num_rows
        if part.plan:
            plans.setdefault(part.format, {})[part.split] = part.plan
    return rows, plans


def summary(rows: dict, plans: dict) -> str:
    """The export's log line: rows per format and split, and the in-batch conflicts left (the detail is in the
    manifest and metrics/export.json)."""
    counts = ", ".join(
        f"{fmt} " + " + ".join(f"{n} {split}" for split, n in splits.items()) for fmt, splits in rows.items()
    )
    conflicts = sum(plan.get("false_in_batch_negatives", 0) for splits in plans.values() for plan in splits.values())
    return f"{counts}; {conflicts} false in-batch negatives left in planned batches"


def headline(stats: dict) -> dict:
    """`metrics/headline.json`: the dozen figures `dvc exp show` and `dvc metrics diff` put side by side, out of
    `metrics` (`metrics/export.json` keeps them all: ~100 columns are a table nobody reads)."""
    measured = stats["false_negatives"] or {}
    rejected: dict[str, int] = {}
    for key, rows in stats["rejections"].items():
        stage = key.split("/")[0]
        rejected[stage] = rejected.get(stage, 0) + rows
    first = next(iter(stats["rows"]), None)  # the first format of `export.formats`: its rows, per split
    return {
        "version": stats["version"],
        "rows": {split: stats["rows"].get(first, {}).get(split, 0) for split in ("train", "dev")},
        "queries": stats.get("queries", 0),
        "negatives": stats["scores"]["mined"]["count"],
        "counterfactuals": stats["counterfactuals"],
        "short_queries": sum(stats["short_queries"].values()),
        "fn_rate": measured.get("rate"),
        "rejected": rejected,
        "score_p50": {kind: found.get("p50") for kind, found in stats["scores"].items()},
    }


def index_facts(index: Path) -> dict:
    """How the negatives were searched for: the index stage's facts (factory, exact or not, and an approximate
    index's search setting and recall@10 against exact search)."""
    return artifacts.manifest(index / "doc_ids").get("index", {})


def short_queries(filtered: Path) -> dict[str, int]:
    """How many queries the filter left short of negatives, by reason (`data/filtered/short_queries`)."""
    found = artifacts.read(filtered / "short_queries", ["reason"])["reason"].to_pylist()
    return dict(sorted(collections.Counter(found).items()))


def false_negatives(filtered: Path) -> dict | None:
    """The filter's measured false-negative rate (`pipeline.filtering.calibration`), None before it measured one."""
    manifest = filtered / "calibration" / artifacts.MANIFEST
    return artifacts.manifest(manifest.parent).get("false_negatives") if manifest.exists() else None


def qrels_delta(proposed: pa.Table) -> str:
    """The proposed extra positives as a BEIR qrels file (query-id, corpus-id, score), to merge into the source's."""
    rows = zip(proposed["query_id"].to_pylist(), proposed["doc_id"].to_pylist())
    return "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rows)


def metrics(data: Path, scores: dict, version: str, written: list[Part], frames: Frames) -> dict:
    """`metrics/export.json`: rows and batch plans per format and split, how many counterfactual rows there are,
    rejections and score statistics (`scores`: `report.scores(data)`), the measured false-negative rate, the
    proposed extra positives, and the train triplets' averages."""
    rows, plans = tally(written)
    stats = {"version": version, "rows": rows, "batches": plans, "counterfactuals": frames.contrast.height}
    stats["promoted"] = frames.promoted
    stats["false_negatives"] = false_negatives(data / "filtered")
    stats["short_queries"] = short_queries(data / "filtered")
    stats |= report.metrics(data, scores)
    triplets = next((p.table for p in written if p.format == "triplet" and p.split == "train"), None)
    if triplets is not None:
        stats["queries"] = len(set(triplets["query_id"].to_pylist()))
        stats["mean_pos_score"] = pc.mean(triplets["pos_score"]).as_py()
        stats["mean_neg_score"] = pc.mean(triplets["neg_score"]).as_py()
    return stats
