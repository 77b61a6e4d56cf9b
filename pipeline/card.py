"""The dataset card: Hugging Face YAML front matter (configs, splits, features, sizes) and a readable summary."""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.formats import text_columns


def _feature(dtype: pa.DataType) -> object:
    if pa.types.is_list(dtype):
        return {"list": _feature(dtype.value_type)}
    names = {pa.string(): "string", pa.int64(): "int64", pa.int32(): "int32", pa.float32(): "float32"}
    return {"dtype": names.get(dtype, str(dtype))}


def _false_negatives(report: dict | None) -> list[str]:
    """The card's section on the measured false-negative rate (see `pipeline.filtering.calibration`)."""
    if report is None:
        return []
    lines = ["## False negatives, measured", ""]
    if report["rate"] is None:
        return [*lines, f"Not measured: {report['why_no_rate']}.", ""]
    low, high = report["interval"]
    return [
        *lines,
        f"On the {report['queries']} queries with two or more judged positives, the first was kept and the other "
        f"{report['hidden_positives']} hidden, and mining and filtering ran again as for every query: "
        f"{report['false_negatives']} of the {report['negatives']} negatives kept were hidden positives, a "
        f"false-negative rate of **{report['rate']:.1%}** (95% bootstrap interval over queries "
        f"{low:.1%} to {high:.1%}). Those negatives' mean similarity to their query is {report['mean_score']:.3f}, "
        f"their mean rank {report['mean_rank']:.1f}; {report['queries_short']} of these queries came out short of "
        "negatives.",
        "",
        *_learned(report.get("learned")),
        *_tuning(report.get("tuning")),
    ]


def _learned(found: dict | None) -> list[str]:
    """The card's lines on the model of unlabelled positives learned from these queries."""
    if not found or not found["used"]:
        return []
    return [
        f"A model of unlabelled positives was learned from these queries ({found['examples']} candidates, "
        f"{found['hidden_positives']} of them hidden positives; its weights are in the manifest): candidates to "
        f"which it gives a chance of at least `filter.likely_positive_above: {found['above']}` of being a positive "
        "were rejected, in place of the cosine rules. The rate above is cross-fitted: each query was judged by a "
        "model fitted on the other half of the queries, never by one that learned from it.",
        "",
    ]


def _tuning(tuning: dict | None) -> list[str]:
    """The card's lines on the setting calibrated to `filter.target_fn_rate`, measured on queries that did not
    choose it."""
    if tuning is None:
        return []
    knobs = ", ".join(f"`{name}` {'off' if value is None else value}" for name, value in tuning["setting"].items())
    outcome = "met" if tuning["met"] else "missed (the lowest rate of the grid was chosen)"
    low, high = tuning["cross_fitted_interval"] or (None, None)
    honest = (
        f"{tuning['cross_fitted_rate']:.1%} (95% interval {low:.1%} to {high:.1%})"
        if tuning["cross_fitted_rate"] is not None
        else "not measurable (too few queries for two folds)"
    )
    return [
        f"Calibrated to `filter.target_fn_rate: {tuning['target']}`, {outcome}: of {tuning['settings_tried']} "
        f"settings, every query got {knobs}. Measured on the queries that did not choose it (two folds, each "
        f"chosen on the other), its false-negative rate is {honest}; the rate above is the in-sample one.",
        "",
    ]


def _short_queries(counts: dict[str, int] | None, num_negatives: int) -> list[str]:
    """The card's line on the queries left with fewer negatives than asked, by reason."""
    if not counts:
        return []
    why = ", ".join(f"{reason} {n}" for reason, n in counts.items())
    return [
        "## Queries short of negatives",
        "",
        f"{sum(counts.values())} queries have fewer than {num_negatives} negatives ({why}): "
        "`data/filtered/short_queries` lists each with how deep its window went and what rejected its candidates.",
        "",
    ]


def _promoted(report: dict | None) -> list[str]:
    """The card's section on the candidates the judges found relevant: proposed extra positives, used or not."""
    if not report:
        return []
    judges = ", ".join(f"{name} `{model}`" for name, model in report["judges"].items())
    use = (
        "They are positives in every format here (`export.promote_false_negatives: true`)."
        if report["used"]
        else "They are not used as positives here (`export.promote_false_negatives: false`); they are not negatives "
        "either."
    )
    return [
        "## Proposed extra positives",
        "",
        f"{report['proposed']} mined candidates were judged relevant to their query with confidence at least "
        f"{report['above']} by every judge that scored them ({judges}): likely unlabelled positives. {use} "
        "`promoted-qrels.tsv` lists them as BEIR qrels to review and merge into the source's; "
        "`data/filtered/promoted` holds each one's confidence and judges.",
        "",
    ]


def _teacher(manifest: dict, formats: dict) -> list[str]:
    """Whose scores n-tuple-scores' `score` holds: distillation losses learn to reproduce them."""
    if "n-tuple-scores" not in formats:
        return []
    teacher = manifest.get("teacher")
    whose = (
        f"the cross-encoder `{teacher}` (the filter's judge): its probability that the document answers the anchor"
        if teacher
        else "the embedding model's cosine similarity (the filter ran no cross-encoder to act as a teacher)"
    )
    return [f"`score` in n-tuple-scores (positive first, then each negative) is {whose}.", ""]


def card(name: str, version: str, tables: dict[str, dict[str, pa.Table]], manifest: dict) -> str:
    """`tables`: per format, per split (train, and dev when held out), the exported table."""
    import yaml

    def path(fmt: str, split: str) -> str:
        return f"{fmt}/part-*.parquet" if split == "train" else f"{fmt}/{split}/part-*.parquet"

    front = {
        "pretty_name": name,
        "tags": ["sentence-transformers", "hard-negatives", "pairforge"],
        "configs": [
            {"config_name": fmt, "data_files": [{"split": split, "path": path(fmt, split)} for split in splits]}
            for fmt, splits in tables.items()
        ],
        "dataset_info": [
            {
                "config_name": fmt,
                "features": [{"name": f.name, **_feature(f.type)} for f in splits["train"].schema],
                "splits": [{"name": split, "num_examples": t.num_rows} for split, t in splits.items()],
            }
            for fmt, splits in tables.items()
        ],
    }
    first = next(iter(tables), "triplet")
    batched = [fmt for fmt, splits in tables.items() if "batch_id" in splits["train"].column_names]
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        f"# {name}",
        "",
        f"Version `{version}` (content hash of every Parquet part), built by pairforge.",
        "",
        "| format | split | rows | text columns for a trainer |",
        "| --- | --- | --- | --- |",
        *[
            f"| {fmt} | {split} | {t.num_rows} | `{', '.join(text_columns(fmt, t))}` |"
            for fmt, splits in tables.items()
            for split, t in splits.items()
        ],
        "",
        "Load one format and keep the columns a sentence-transformers trainer reads:",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("parquet", data_files="{path(first, "train")}", split="train")',
        f"ds = ds.select_columns({text_columns(first, tables[first]['train'])!r})" if tables else "",
        "```",
        "",
        *(
            [
                f"Rows of {', '.join(batched)} are written batch by batch (`batch_id`, method "
                f"`{manifest['params']['export']['batching']}`, {manifest['params']['export']['batch_size']} rows):",
                "read them in order, with that batch size and no shuffling, to train on these batches.",
                "",
            ]
            if batched
            else []
        ),
        *_teacher(manifest, tables),
        *_false_negatives(manifest.get("false_negatives")),
        *_promoted(manifest.get("promoted")),
        *_short_queries(manifest.get("short_queries"), manifest["params"]["mine"]["num_negatives"]),
        "## Provenance",
        "",
        "```json",
        json.dumps(manifest, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
