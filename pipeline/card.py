"""The dataset card: Hugging Face YAML front matter (license, language, tasks, configs, splits, features, sizes) and
a readable summary: source, models, thresholds, a glossary of every column, example rows, measured quality."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa

from pairforge.pipeline.formats import text_columns
from pairforge.pipeline.preview import glossary, markdown

# Hugging Face task categories a format serves: embedding formats train similarity and retrieval; labelled and
# scored ones also train rerankers.
EMBEDDING = ("sentence-similarity", "text-retrieval")
TASKS = {
    "triplet": EMBEDDING, "n-tuple": EMBEDDING, "mixed": EMBEDDING, "contrast-triplet": ("sentence-similarity",),
    "n-tuple-scores": ("text-retrieval", "text-ranking"), "labeled-pair": ("sentence-similarity", "text-ranking"),
    "labeled-list": ("text-ranking",),
}  # fmt: skip
# The Hub's size_categories, one per decade of rows from 1K on.
SIZES = ["n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B", "1B<n<10B"]
# Params that say how the work ran (where, how fast, with what resources), not what it decided: the card's table
# of thresholds leaves them out; the provenance below keeps every param.
RUNNING = {
    "actors", "cpus_per_actor", "gpus_per_actor", "batch_size", "query_batch_size", "query_shard", "cache",
    "checkpoint_rows", "llm_base_url", "llm_api_key_env", "llm_allow_http", "llm_concurrency", "llm_timeout_s",
    "llm_max_failure_share", "llm_tensor_parallel_size", "llm_engine_options",
}  # fmt: skip


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


def _generated(kinds: dict | None, params: dict) -> list[str]:
    """The card's section on pairs whose query an LLM wrote: how many, by which model, kept by which checks."""
    generated = (kinds or {}).get("generated", 0)
    if not generated:
        return []
    pairs, judge = params["pairs"], params["filter"]["cross_encoder"]
    return [
        "## Generated queries",
        "",
        f"{generated} of the {sum(kinds.values())} (query, positive) pairs have a query that `{pairs['llm_model']}` "
        f"(backend `{pairs['llm_backend']}`) wrote for the document, in the styles {', '.join(pairs['styles'])} "
        f"(`positive_kind: generated`; the others are `judged`). Each was kept only when the encoder "
        f"`{params['embed']['model']}` ranks its document within the top {pairs['round_trip_top_k']} of the corpus "
        f"for it, fewer than {pairs['ambiguous_docs']} other documents score within {pairs['ambiguous_margin']} of "
        f"it, it copies at most {pairs['max_copied_words']} consecutive words of the document"
        + (f" and less than {pairs['max_copied_share']:.0%} of its own words" if pairs.get("max_copied_share") else "")
        + ", it repeats no other query"
        + (f", and the cross-encoder `{judge}` gives it at least {pairs['ce_min']}" if judge else "")
        + ". `data/pairs/written` holds every query written with those measures; the rejected ones are in the ledger "
        "(stage `pairs`).",
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


def _path(fmt: str, split: str) -> str:
    return f"{fmt}/part-*.parquet" if split == "train" else f"{fmt}/{split}/part-*.parquet"


def _front(name: str, tables: dict[str, dict[str, pa.Table]], export: dict, folder: Path) -> dict:
    """The YAML front matter. Sizes as `datasets` and the Hub count them: a split's `num_bytes` is its Arrow size
    in memory, `dataset_size` their sum, `download_size` the Parquet files' bytes."""
    rows = max(sum(t.num_rows for t in splits.values()) for splits in tables.values())
    language = export["language"]
    return {
        "pretty_name": name,
        "license": export["license"],
        "language": [language] if isinstance(language, str) else language,
        "task_categories": sorted({task for fmt in tables for task in TASKS[fmt]}),
        "tags": ["sentence-transformers", "hard-negatives", "contrastive-learning", "pairforge"]
        + (["counterfactuals"] if {"contrast-triplet", "mixed"} & set(tables) else []),
        "size_categories": [SIZES[min(len(SIZES) - 1, max(0, len(str(rows)) - 3))]],  # 999: n<1K, 1000: 1K<n<10K
        "configs": [
            {"config_name": fmt, "data_files": [{"split": split, "path": _path(fmt, split)} for split in splits]}
            for fmt, splits in tables.items()
        ],
        "dataset_info": [
            {
                "config_name": fmt,
                "features": [{"name": f.name, **_feature(f.type)} for f in splits["train"].schema],
                "splits": [
                    {"name": split, "num_bytes": t.nbytes, "num_examples": t.num_rows} for split, t in splits.items()
                ],
                "download_size": sum(f.stat().st_size for split in splits for f in folder.glob(_path(fmt, split))),
                "dataset_size": sum(t.nbytes for t in splits.values()),
            }
            for fmt, splits in tables.items()
        ],
    }


def _source(params: dict) -> list[str]:
    """Where the texts came from, how the counterfactuals were made, and the license they carry."""
    ingest, generate = params["ingest"], params["generate"]
    sampled = f"; {ingest['max_queries']} queries sampled (seed {ingest['seed']})" if ingest["max_queries"] else ""
    subset = f", subset `{ingest['subset']}`" if ingest.get("subset") else ""
    extra = f", with unlabelled documents from `{ingest['corpus']}`" if ingest.get("corpus") else ""
    rules = ", ".join(generate["rules"]) or "none"
    llm = (
        f"LLM `{generate['llm_model']}` ({generate['llm_backend']}) on up to {generate['llm_max_items']} of them, "
        f"controls {', '.join(generate['llm_controls'])}"
        if generate["llm_backend"] != "none"
        else "no LLM"
    )
    return [
        "## Source",
        "",
        f"Built from `{ingest['source']}` (format `{ingest['format']}`, split `{ingest['split']}`{subset}{extra}"
        f"{sampled}). Its texts are the source's, so this dataset carries the source's terms: license "
        f"`{params['export']['license']}` (`export.license`).",
        f"Counterfactuals are minimal edits of the {generate['source']}: rules {rules}; {llm}.",
        "",
    ]


def _index(facts: dict) -> str:
    """The card's line on the index the negatives were mined from: exact, or how near exact search it came."""
    if facts["exact"]:
        return f"- Index: `{facts['factory']}`, exact search: the negatives are the corpus's nearest documents."
    if "recall" not in facts:
        return f"- Index: `{facts['factory']}`, approximate; its recall was not measured (`index.recall_queries: 0`)."
    search, measured = facts.get("search"), facts["recall"]
    searched = f", searched at {search['setting']} {search['value']}" if search else ""
    return (
        f"- Index: `{facts['factory']}`, approximate{searched}: recall@10 {measured['at_10']} against exact search "
        f"on {measured['queries']} sampled queries (`index.target_recall`)."
    )


def _models(params: dict, index_facts: dict) -> list[str]:
    """Which models embedded the texts and judged the negatives and the edits, and the index that found them."""
    embed, judge = params["embed"], params["filter"]
    limit = f"{embed['max_length']} tokens" if embed["max_length"] else "the model's own token limit"
    judges = [f"cross-encoder `{judge['cross_encoder']}`"] if judge["cross_encoder"] else []
    judges += [f"LLM `{judge['llm_model']}` ({judge['llm_backend']})"] if judge["llm_backend"] != "none" else []
    return [
        "## Models",
        "",
        f"- Encoder: `{embed['model']}` ({embed['runtime']}, {embed['precision']}, max length {limit}). It "
        "embedded queries and documents for mining and the near-duplicate checks, and gives every `*_score` column. "
        f"{_prompts(embed)}",
        f"- Judges of negatives: {', '.join(judges) or 'none beyond the encoder'}; of edits' meaning: "
        f"`{judge['edit_judge']}`; of their fluency: "
        + (f"`{judge['edit_lm']}`." if judge["edit_max_nll_increase"] is not None else "none."),
        *([_index(index_facts)] if index_facts else []),
        "",
    ]


def _prompts(embed: dict) -> str:
    """The prompts put before the texts it embedded, as `embed` names them (README, Parameters: embed)."""
    if embed["prompt_name"] is not None:
        return f"Queries and documents alike were prefixed with the model's prompt `{embed['prompt_name']}`."
    sides = []
    for side in ("query", "document"):
        given = embed[f"{side}_prompt"]
        sides.append(f"{side} {json.dumps(given)}" if given else f"{side}: the model's own {side} prompt, if any")
    return f"Prompts before the texts: {'; '.join(sides)}."


def _thresholds(params: dict) -> list[str]:
    """What decided which candidates became negatives and which edits were kept."""
    rows = [
        f"| `{section}.{key}` | {json.dumps(value)} |"
        for section in ("mine", "filter")
        for key, value in params[section].items()
        if key not in RUNNING
    ]
    return ["## Thresholds", "", "`params.yaml` as it was (README, Parameters):", "", "| param | value |",
            "| --- | --- |", *rows, ""]  # fmt: skip


def _examples(tables: dict[str, dict[str, pa.Table]]) -> list[str]:
    """The first three rows of each format's train split, in its trainer columns."""
    lines = ["## Examples", "", "`pairforge preview --format FORMAT` prints more rows, whole.", ""]
    for fmt, splits in tables.items():
        rows = splits["train"].select(text_columns(fmt, splits["train"])).slice(0, 3)
        lines += [f"**{fmt}**", "", *markdown(rows, chars=120), ""]
    return lines


def card(name: str, version: str, tables: dict[str, dict[str, pa.Table]], manifest: dict, folder: Path) -> str:
    """`tables`: per format, per split (train, and dev when held out), the exported table; `folder`: where their
    Parquet parts were written."""
    import yaml

    params = manifest["params"]
    first = next(iter(tables), "triplet")
    batched = [fmt for fmt, splits in tables.items() if "batch_id" in splits["train"].column_names]
    lines = [
        "---",
        yaml.safe_dump(_front(name, tables, params["export"], folder), sort_keys=False).rstrip(),
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
        "Load one format (a config) from this folder or its Hub repository, and keep the columns a "
        "sentence-transformers trainer reads:",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("path/to/this/folder", "{first}", split="train")',
        f"ds = ds.select_columns({text_columns(first, tables[first]['train'])!r})" if tables else "",
        "```",
        "",
        *(
            [
                f"Rows of {', '.join(batched)} are written batch by batch (`batch_id`, method "
                f"`{params['export']['batching']}`, {params['export']['batch_size']} rows):",
                "read them in order, with that batch size and no shuffling, to train on these batches.",
                "",
            ]
            if batched
            else []
        ),
        *_teacher(manifest, tables),
        *_source(params),
        *_models(params, manifest.get("index", {})),
        *_thresholds(params),
        "## Columns",
        "",
        *glossary(tables),
        "",
        *_examples(tables),
        *_false_negatives(manifest.get("false_negatives")),
        *_generated(manifest.get("pairs"), params),
        *_promoted(manifest.get("promoted")),
        *_short_queries(manifest.get("short_queries"), params["mine"]["num_negatives"]),
        "## Provenance",
        "",
        "```json",
        json.dumps(manifest, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(lines)
