"""DVC stage `generate`: queries / positives / sentences -> data/generated/{contrast,attempts,rejections}."""

import collections
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts, models, params, runtime, schema
from pipeline.contrast import generate
from pipeline.shard_cache import TableCache, cached, row_keys, whole_tasks
from pipeline.tasks import UNPARSEABLE
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


def llm_cache(config: params.GenerateParams) -> TableCache:
    """Finished edits of this model, backend and prompt wording (a changed prompt starts afresh)."""
    from pipeline.contrast.prompts import edit_task

    settings = {
        "backend": config.llm_backend,
        "model": models.identity(config.llm_model),
        "base_url": config.llm_base_url,
        "retries": config.llm_retries,
        "max_new_tokens": config.llm_max_new_tokens,
        "prompts": {control: edit_task(control).render(text="") for control in config.llm_controls},
    }
    return TableCache(config.cache, settings)


def llm_results(config: params.GenerateParams, items: pa.Table) -> tuple[pa.Table, int]:
    """Every item of the LLM sample with every control, edited in an actor pool (vLLM: on GPU workers).

    Returns the results and how many were made in this run; the rest come from the cache of finished edits.
    """
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
    table = table.append_column("key", pa.array(row_keys(table["text"], table["control"]), pa.uint64()))
    columns = ["edited", "raw_output", "reason", "attempts"]

    def worth_keeping(results: pa.Table) -> pa.Array:
        """Edits and unparseable replies are the model's answer; an endpoint's failure is retried next run."""
        return pc.or_kleene(pc.is_null(results["reason"]), pc.equal(results["reason"], UNPARSEABLE))

    if config.llm_backend == "vllm":  # ray.data.llm schedules its own GPU workers; this process only drives it
        from pipeline.models.llm import VLLMLLM

        def edit_all(todo: pa.Table) -> list[pa.Table]:
            llm = VLLMLLM(config.llm_model, max_new_tokens=config.llm_max_new_tokens, seed=config.seed)
            pairs = list(zip(todo["text"].to_pylist(), todo["control"].to_pylist()))
            return [EditBatch.with_results(todo, llm_edits(llm, pairs, config.llm_retries, config.llm_max_new_tokens))]

        return cached(llm_cache(config), table, edit_all, columns, config.checkpoint_rows, worth_keeping)
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

    def edit(todo: pa.Table) -> Iterator[pa.Table]:
        return runtime.map_batches(todo, EditBatch, args, resources, rows_per_task=config.batch_size)

    checkpoint_rows = whole_tasks(config.checkpoint_rows, config.batch_size)
    return cached(llm_cache(config), table, edit, columns, checkpoint_rows, worth_keeping)


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
                results, made = llm_results(config, items.slice(0, config.llm_max_items))
                log.info("LLM edits: %d made now, %d from the cache", made, results.num_rows - made)
                contrast, attempts, rejections = generate.from_llm(results.drop(["key"]), generator)
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
