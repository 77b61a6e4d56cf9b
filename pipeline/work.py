"""A model call declared once, run over a table in a Ray actor pool and through its cache.

A `Work` says everything about one kind of call: the actor body (a class built once per actor, e.g. to load a
model, then called on tables of rows), its arguments, what each actor asks of the cluster, how many rows a task
holds, whether the pool's actors are kept for the stage's later calls, the result columns, and the cache they fill
(its root and the settings that change a result). Then:

- `compute(work, table)`: the table with the result columns appended, in input order. Rows already cached are
  looked up; the rest are computed in the pool and checkpointed into the cache as results arrive, so a killed
  run resumes where it stopped and a re-run with the same settings computes nothing.
- `stream(work, table)`: the results, in input order, with no cache (the index search, the rule edits).

Every model-bound step of the pipeline goes through here: embedding, cross-encoder scores, LLM judging, fluency
NLL, LLM edits, rule edits, index search. `llm_call` decides, in one place, the pool an LLM backend runs in.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import runtime, shard_cache
from pairforge.pipeline.runtime import Resources
from pairforge.pipeline.schema import EndpointError
from pairforge.pipeline.shard_cache import ShardCache, TableCache, row_keys
from pairforge.pipeline.vocabulary import UNPARSEABLE, passing_failure

log = logging.getLogger("pairforge.work")


@dataclass(frozen=True)
class Cache:
    """Where a call's finished results are kept: `<root>/<settings key>/shard-*`."""

    root: str | Path
    # Everything besides a row's content that changes its result: the model's fingerprint, a length limit, the
    # prompt's wording. Changing one starts a new folder; the cache key of a row is the hash of its `key` columns.
    settings: dict
    checkpoint_rows: int  # about this many results per shard, written as they arrive
    kind: type[ShardCache] = TableCache


@dataclass(frozen=True)
class Work:
    """One kind of model call. `worker(**args)` is built once per actor; `worker(...)(table)` returns the table's
    rows with the `columns` it computes appended (other columns pass through)."""

    worker: type
    args: dict
    resources: Resources
    rows_per_task: int
    columns: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # the columns the worker reads (all when empty)
    key: tuple[str, ...] = ()  # the content a result depends on (default: the inputs), hashed per row
    cache: Cache | None = None
    keep_pool: bool = False  # keep the actors, with what they loaded, for the stage's later calls
    arrange: Callable[[pa.Table], pa.Table] | None = None  # the order rows are cut into tasks in
    # Which results may be cached (e.g. not an endpoint's failure); the others are returned, and asked again next run.
    cacheable: Callable[[pa.Table], pa.Array] | None = field(default=None)
    endpoint: Endpoint | None = None  # the remote service the call depends on, if any


@dataclass(frozen=True)
class Endpoint:
    """A remote LLM a call depends on: asked once (`preflight`, which raises EndpointError) before its first row is
    computed, and held to a failure budget over the whole stage. `failed(results)` marks the rows it failed on
    after its retries (they stay pending); more than `max_failure_share` of the rows asked, and at least
    `FAILURES_BEFORE_JUDGING` of them, fail the stage."""

    url: str
    preflight: Callable[[], None]
    failed: Callable[[pa.Table], pa.Array]
    max_failure_share: float


# A few failed items in a small run are bad luck, not an outage: the share is not judged on fewer failures.
FAILURES_BEFORE_JUDGING = 5


@dataclass
class Tally:
    asked: int = 0
    failed: int = 0


# Per endpoint URL, the rows asked and failed in this process (a stage): the budget spans every call the stage
# makes (the filter's rounds and shards, both its questions), so many small calls cannot each pass it.
_TALLIES: dict[str, Tally] = {}
_ANSWERED_PREFLIGHT: set[str] = set()


def stream(work: Work, table: pa.Table) -> Iterator[pa.Table]:
    """Run `work` over every row of `table` in its actor pool; result tables in input order (after `arrange`)."""
    rows = table.select([*work.inputs, *(["key"] if "key" in table.column_names else [])]) if work.inputs else table
    if work.arrange is not None:
        rows = work.arrange(rows)
    return runtime.map_batches(rows, work.worker, work.args, work.resources, work.rows_per_task, keep=work.keep_pool)


def _on_endpoint(work: Work, rows: pa.Table) -> Iterator[pa.Table]:
    """`stream`, with the endpoint asked first (once per stage) and its failures counted as results arrive."""
    endpoint = work.endpoint
    if endpoint.url not in _ANSWERED_PREFLIGHT:
        endpoint.preflight()
        _ANSWERED_PREFLIGHT.add(endpoint.url)
    tally = _TALLIES.setdefault(endpoint.url, Tally())
    for results in stream(work, rows):
        tally.asked += results.num_rows
        tally.failed += pc.sum(pc.cast(endpoint.failed(results), pa.int64())).as_py() or 0
        yield results
        if tally.failed >= FAILURES_BEFORE_JUDGING and tally.failed > endpoint.max_failure_share * tally.asked:
            raise EndpointError(
                f"the endpoint {endpoint.url} failed on {tally.failed} of {tally.asked} items after its retries, "
                f"more than llm_max_failure_share ({endpoint.max_failure_share}); what it answered is cached, and "
                f"the next run asks only for the rest"
            )


def open_cache(work: Work) -> ShardCache:
    return work.cache.kind(work.cache.root, work.cache.settings)


def _keyed(work: Work, table: pa.Table) -> pa.Table:
    columns = work.key or work.inputs
    return table.append_column("key", pa.array(row_keys(*(table[name] for name in columns)), pa.uint64()))


def compute(work: Work, table: pa.Table) -> tuple[pa.Table, int]:
    """`table` with the work's result columns appended (input order), computing only the rows its cache lacks,
    each distinct key once. Returns the table and how many rows were computed in this call."""
    cache = open_cache(work)
    # Shards hold whole tasks, so a resumed run's tasks (hence batches, hence bytes) line up with the first run's.
    checkpoint_rows = shard_cache.whole_tasks(work.cache.checkpoint_rows, work.rows_per_task)
    keyed = _keyed(work, table)
    run = functools.partial(_on_endpoint if work.endpoint else stream, work)
    out, computed = shard_cache.cached(cache, keyed, run, list(work.columns), checkpoint_rows, work.cacheable)
    if table.num_rows:
        log.info(
            "%s: %d rows, %d computed now, the rest from %s",
            work.worker.__name__,
            table.num_rows,
            computed,
            cache.folder,
        )
    return out.drop(["key"]), computed


def llm_call(config) -> tuple[dict, Resources]:
    """The backend options and the actor pool of the LLM that generate's or filter's params name (both sections
    share these keys). An endpoint does the work, so one actor holds its client and its request threads; vLLM runs
    one engine per actor, each with its tensor-parallel GPUs; a local transformers model, one copy per actor."""
    pool = Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor)
    if config.llm_backend == "openai":
        options = {
            "base_url": config.llm_base_url,
            "api_key_env": config.llm_api_key_env,
            "concurrency": config.llm_concurrency,
            "timeout_s": config.llm_timeout_s,
        }
        return options, Resources(actors=1, cpus=1)
    if config.llm_backend == "vllm":
        options = {"tensor_parallel_size": config.llm_tensor_parallel_size, "engine_options": config.llm_engine_options}
        gpus = max(config.gpus_per_actor, float(config.llm_tensor_parallel_size))
        return options, Resources(config.actors, config.cpus_per_actor, gpus)
    return {}, pool


def llm_task(config, worker: type, prompts: dict, inputs: tuple[str, ...], columns: tuple[str, ...], **extra) -> Work:
    """An LLM task of generate's or pairs' params (`worker(backend, model, options, retries, max_new_tokens,
    **extra)` its actor body) as a declared model call: results cached by backend, model, endpoint, retries, token
    budget and the prompts' wording (a reworded prompt asks afresh), and the `inputs`. The model's answers are
    cached, unparseable ones too; an endpoint's failure is not (the next run asks again)."""
    from pairforge.pipeline import models

    options, resources = llm_call(config)
    settings = {
        "backend": config.llm_backend,
        "model": models.identity(config.llm_model),
        "base_url": config.llm_base_url,
        "retries": config.llm_retries,
        "max_new_tokens": config.llm_max_new_tokens,
        "prompts": prompts,
    }
    args = {
        "backend": config.llm_backend,
        "model": config.llm_model,
        "options": options,
        "retries": config.llm_retries,
        "max_new_tokens": config.llm_max_new_tokens,
        **extra,
    }

    def worth_keeping(results: pa.Table) -> pa.Array:
        return pc.or_kleene(pc.is_null(results["reason"]), pc.equal(results["reason"], UNPARSEABLE))

    def failed(results: pa.Table) -> pa.Array:
        return pa.array([passing_failure(reason) for reason in results["reason"].to_pylist()], pa.bool_())

    return Work(
        worker=worker,
        args=args,
        resources=resources,
        rows_per_task=config.batch_size,
        columns=columns,
        inputs=inputs,
        cache=Cache(config.cache, settings, config.checkpoint_rows),
        cacheable=worth_keeping,
        endpoint=llm_endpoint(config, failed),
    )


def llm_endpoint(config, failed: Callable[[pa.Table], pa.Array]) -> Endpoint | None:
    """The endpoint the generate or filter params name (backend `openai`; None for a model in the pool), with
    `failed` marking the result rows it failed on."""
    if config.llm_backend != "openai":
        return None
    options, _ = llm_call(config)

    def preflight() -> None:
        from pairforge.pipeline.models import llm

        llm.load("openai", config.llm_model, **options).preflight()

    return Endpoint(config.llm_base_url, preflight, failed, config.llm_max_failure_share)
