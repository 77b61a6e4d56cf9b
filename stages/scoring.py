"""The filter stage's model calls (cross-encoder scores, LLM answers, LM fluency, encoder vectors) in Ray actor
pools, each through a cache of finished results: a filter re-run after a crash, or after a threshold change,
scores only the pairs it has not scored before with the same model and settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import embed, models, params, runtime
from pipeline.shard_cache import EmbeddingCache, TableCache, cached, fill, row_keys, whole_tasks


def pool(config: params.FilterParams | params.EmbedParams) -> runtime.Resources:
    return runtime.Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)


def pairs(query: list[str], document: list[str]) -> pa.Table:
    table = pa.table({"query": query, "document": document})
    return table.append_column("key", pa.array(row_keys(table["query"], table["document"]), pa.uint64()))


def cross_encoder_scores(config: params.FilterParams, query: list[str], document: list[str]) -> np.ndarray:
    from pipeline.models.scorer import CrossEncoderBatch

    args = {"model": config.cross_encoder, "max_length": config.ce_max_length, "batch_size": config.batch_size}
    rows = config.batch_size * 4
    settings = {"model": models.identity(config.cross_encoder), "max_length": config.ce_max_length}
    cache = TableCache(Path(config.cache) / "cross_encoder", settings)

    def score(todo: pa.Table) -> Iterator[pa.Table]:
        # Kept: the judge scores every refill round and query shard, and would otherwise load the model each time.
        return runtime.map_batches(todo, CrossEncoderBatch, {**args, "device": "auto"}, pool(config), rows, keep=True)

    out, _ = cached(cache, pairs(query, document), score, ["ce_score"], whole_tasks(config.checkpoint_rows, rows))
    return out["ce_score"].to_numpy().astype(np.float32)


def llm_answers(config: params.FilterParams, question: str, query: list[str], document: list[str]) -> pa.Table:
    """`p_yes` (null without a usable answer), `failure` (an index into LLM_FAILURES) and `raw_output` per pair.

    Answers are cached; an endpoint's failures are not, so the next run asks again.
    """
    from pipeline.filter import LLMJudgeBatch, llm_scores_from_replies
    from pipeline.tasks import RELEVANCE_JUDGE, SAME_MEANING_JUDGE

    task = {"relevance": RELEVANCE_JUDGE, "same_meaning": SAME_MEANING_JUDGE}[question]
    settings = {
        "backend": config.llm_backend,
        "model": models.identity(config.llm_model),
        "base_url": config.llm_base_url,
        "task": repr(task),  # the prompt's wording: a reworded prompt asks afresh
    }
    cache = TableCache(Path(config.cache) / f"llm_{question}", settings)
    columns = ["p_yes", "failure", "raw_output"]
    if config.llm_backend == "vllm" and question == "relevance":  # ray.data.llm runs its own GPU workers

        def ask(todo: pa.Table) -> list[pa.Table]:
            from pipeline.models.llm import VLLMSettings

            texts = zip(todo["query"].to_pylist(), todo["document"].to_pylist())
            prompts = [RELEVANCE_JUDGE.render(query=q, passage=d) for q, d in texts]
            replies = runtime.vllm_generate(prompts, VLLMSettings(model=config.llm_model, max_new_tokens=12))
            scores = llm_scores_from_replies(replies)
            return [
                pa.table(
                    {
                        "key": todo["key"],
                        "p_yes": pa.array(scores["p_yes"], pa.float32(), from_pandas=True),  # NaN: no answer
                        "failure": pa.array(scores["failure"], pa.int8()),
                        "raw_output": pa.array(scores["raw_output"].tolist(), pa.string()),
                    }
                )
            ]

        rows = config.checkpoint_rows
    elif config.llm_backend == "vllm":

        def ask(todo: pa.Table) -> list[pa.Table]:
            return [LLMJudgeBatch("vllm", config.llm_model, {}, question)(todo)]

        rows = config.checkpoint_rows
    else:
        options = {"base_url": config.llm_base_url, "api_key_env": config.llm_api_key_env}
        args = {"backend": config.llm_backend, "model": config.llm_model, "question": question}
        args["options"] = options if config.llm_backend == "openai" else {}
        # The endpoint does the work: one actor holds the client and its threads.
        resources = runtime.Resources(actors=1, cpus=1) if config.llm_backend == "openai" else pool(config)
        rows = config.batch_size

        def ask(todo: pa.Table) -> Iterator[pa.Table]:
            return runtime.map_batches(todo, LLMJudgeBatch, args, resources, rows, keep=True)  # as the cross-encoder

    def answered(results: pa.Table) -> pa.Array:
        return pc.equal(results["failure"], 0)

    out, _ = cached(cache, pairs(query, document), ask, columns, whole_tasks(config.checkpoint_rows, rows), answered)
    return out.select(columns)


def embedder(config: params.EmbedParams) -> tuple[EmbeddingCache, Callable, int, str]:
    """For the embed settings: their cache, `encode(rows)` embedding (id, text, key) rows in the actor pool,
    the rows per checkpoint shard, and the model's fingerprint."""
    folder = models.resolve(config.model)
    fingerprint = models.fingerprint(folder)
    settings = {
        "model": fingerprint,
        "max_length": config.max_length,
        "precision": config.precision,
        "runtime": config.runtime,
    }
    args = {
        "model": str(folder),
        "max_length": config.max_length,
        "batch_size": config.batch_size,
        "device": config.device,
        "precision": config.precision,
        "runtime": config.runtime,
    }
    rows = config.batch_size * 2

    def encode(todo: pa.Table) -> Iterator[pa.Table]:
        todo = embed.length_sorted(todo.select(["id", "text", "key"]))
        return runtime.map_batches(todo, embed.EmbedBatch, args, pool(config), rows_per_task=rows)

    return EmbeddingCache(config.cache, settings), encode, whole_tasks(config.checkpoint_rows, rows), fingerprint


def vectors(config: params.EmbedParams, texts: list[str]) -> np.ndarray:
    """The embed stage's vectors for these texts, from its cache (computing and caching the missing ones)."""
    cache, encode, checkpoint_rows, _ = embedder(config)
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    table = table.append_column("key", pa.array(row_keys(table["text"]), pa.uint64()))
    fill(cache, table, encode, ["vector", "truncated"], checkpoint_rows)
    return cache.lookup(table["key"].to_numpy())[0]


def mean_nll(config: params.FilterParams, texts: list[str]) -> np.ndarray:
    """Mean token NLL of each text under `edit_lm`."""
    from pipeline.contrast import validate

    cache = TableCache(Path(config.cache) / "fluency", {"model": models.identity(config.edit_lm)})
    table = pa.table({"text": texts})
    table = table.append_column("key", pa.array(row_keys(table["text"]), pa.uint64()))
    args = {"model": config.edit_lm, "batch_size": config.batch_size}

    def score(todo: pa.Table) -> Iterator[pa.Table]:
        return runtime.map_batches(todo, validate.FluencyBatch, args, pool(config), config.batch_size)

    out, _ = cached(cache, table, score, ["nll"], whole_tasks(config.checkpoint_rows, config.batch_size))
    return out["nll"].to_numpy().astype(np.float32)
