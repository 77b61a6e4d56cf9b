"""DVC stage `generate`: queries / positives / sentences -> data/generated/{contrast,attempts,rejections}."""

import collections

import pyarrow as pa

from pipeline import artifacts, params, runtime, schema
from pipeline.contrast import generate
from stages.common import GENERATED, INGESTED, stage


def source_table(config: params.GenerateParams) -> pa.Table:
    """`source_kind`, `source_id`, `text` of what the params say to edit, in the ingested order."""
    if config.source == "sentences":
        return generate.sentences(config.sentences_file, config.sentence_column)
    if config.source == "queries":
        queries = artifacts.read(INGESTED / "queries")
        return pa.table(
            {"source_kind": ["query"] * queries.num_rows, "source_id": queries["query_id"], "text": queries["text"]}
        )
    corpus = artifacts.read(INGESTED / "corpus", ["doc_id", "text"])
    text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    doc_ids = list(dict.fromkeys(artifacts.read(INGESTED / "positives", ["doc_id"])["doc_id"].to_pylist()))
    return pa.table(
        {"source_kind": ["positive"] * len(doc_ids), "source_id": doc_ids, "text": [text[d] for d in doc_ids]}
    )


def llm_results(config: params.GenerateParams, items: pa.Table) -> pa.Table:
    """Every item of the LLM sample with every control, edited in an actor pool (vLLM: on GPU workers)."""
    from pipeline.contrast.prompts import EditBatch, llm_edits

    controls = config.llm_controls
    table = pa.table(
        {
            "source_kind": [k for k in items["source_kind"].to_pylist() for _ in controls],
            "source_id": [s for s in items["source_id"].to_pylist() for _ in controls],
            "text": [t for t in items["text"].to_pylist() for _ in controls],
            "control": controls * items.num_rows,
        }
    )
    if config.llm_backend == "vllm":  # ray.data.llm schedules its own GPU workers; this process only drives it
        from pipeline.models.llm import VLLMLLM

        llm = VLLMLLM(config.llm_model, max_new_tokens=config.llm_max_new_tokens, seed=config.seed)
        pairs = list(zip(table["text"].to_pylist(), table["control"].to_pylist()))
        results = llm_edits(llm, pairs, config.llm_retries, config.llm_max_new_tokens)
        return EditBatch.with_results(table, results)
    options, resources = {}, runtime.Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)
    if config.llm_backend == "openai":  # the endpoint does the work: one actor holds the client and its threads
        options = {
            "base_url": config.llm_base_url,
            "api_key_env": config.llm_api_key_env,
            "concurrency": config.llm_concurrency,
            "timeout_s": config.llm_timeout_s,
        }
        resources = runtime.Resources(actors=1, cpus=1)
    args = {
        "backend": config.llm_backend,
        "model": config.llm_model,
        "options": options,
        "retries": config.llm_retries,
        "max_new_tokens": config.llm_max_new_tokens,
    }
    return pa.concat_tables(runtime.map_batches(table, EditBatch, args, resources, rows_per_task=config.batch_size))


def main() -> None:
    with stage("generate") as log:
        config = params.load("generate")
        items = generate.sample(source_table(config), config.max_items, config.seed)
        source = config.sentences_file if config.source == "sentences" else INGESTED
        inputs = {config.source: artifacts.fingerprint(source)}
        outcomes = collections.Counter()
        with artifacts.ArtifactWriter(GENERATED, config, inputs) as out:
            for name, table_schema in (
                ("contrast", schema.CONTRAST),
                ("attempts", schema.ATTEMPTS),
                ("rejections", schema.REJECTIONS),
            ):
                out.write(name, table_schema.empty_table())  # each artifact exists, even when nothing is made
            if config.rules:
                from pipeline.contrast.rules import RuleBatch

                resources = runtime.Resources(config.actors, config.cpus_per_actor, 0.0)
                rule_args = {"ops": config.rules}
                for results in runtime.map_batches(items, RuleBatch, rule_args, resources, rows_per_task=256):
                    contrast, attempts = generate.from_rules(results)
                    out.write("contrast", contrast)
                    out.write("attempts", attempts)
                    outcomes.update(zip(attempts["op"].to_pylist(), attempts["outcome"].to_pylist()))
            if config.llm_backend != "none" and config.llm_max_items:
                generator = f"llm:{config.llm_backend}:{config.llm_model}"
                results = llm_results(config, items.slice(0, config.llm_max_items))
                contrast, attempts, rejections = generate.from_llm(results, generator)
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
