"""What every stage entry point shares: artifact paths, logging, timing, and the error exit."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import artifacts
from pipeline.schema import InputError
from pipeline.shard_cache import ShardCache, TableCache

DATA = Path("data")
INGESTED = DATA / "ingested"
EMBEDDINGS = DATA / "embeddings"
INDEX = DATA / "index"
MINED = DATA / "mined"
GENERATED = DATA / "generated"
FILTERED = DATA / "filtered"
EXPORT = DATA / "export"
METRICS = Path("metrics")


@contextlib.contextmanager
def stage(name: str) -> Iterator[logging.Logger]:
    """Log the stage's wall time; turn bad input into one clear line on stderr and exit status 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for noisy in ("ray", "faiss", "transformers", "httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log = logging.getLogger(f"pairforge.{name}")
    started = time.perf_counter()
    try:
        yield log
    except InputError as err:
        log.error("bad input: %s", err)
        sys.exit(f"pairforge {name}: {err}")
    log.info("%s finished in %.1f s", name, time.perf_counter() - started)


def doc_topics() -> dict[str, int]:
    """Each document's k-means topic, from the index stage (empty when topics are turned off)."""
    if not (INDEX / "doc_topics").exists():
        return {}
    table = artifacts.read(INDEX / "doc_topics")
    return dict(zip(table["id"].to_pylist(), table["topic"].to_pylist()))


def whole_tasks(checkpoint_rows: int, task_rows: int) -> int:
    """Shards of whole tasks, so a resumed run's tasks (hence batches, hence bytes) line up with the first's."""
    return max(1, checkpoint_rows // task_rows) * task_rows


def fill(
    cache: ShardCache,
    todo: pa.Table,
    compute: Callable,
    columns: list[str],
    checkpoint_rows: int,
    keep: Callable[[pa.Table], pa.Array] | None = None,
) -> tuple[int, pa.Table | None]:
    """Compute the rows of `todo` (with a `key` column) that `cache` lacks, each key once.

    `compute(rows)` yields result tables in input order (e.g. `runtime.map_batches`); their `columns` are added
    to the cache as a shard once about `checkpoint_rows` rows have arrived, and at the end. Shards hold whole
    result tables, and results come back in order, so a run resumed after a kill finds a prefix done and
    computes the rest in the same tasks as the killed run would have: the same batches, the same bytes.
    `keep(results)` says which rows may be cached (e.g. not an endpoint's transient failure, to retry next run);
    the others are returned. Returns (rows computed, rows computed but not cached).
    """
    missing = todo.filter(pa.array(~cache.contains(todo["key"].to_numpy())))
    _, first = np.unique(missing["key"].to_numpy(), return_index=True)
    missing = missing.take(np.sort(first))
    pending: list[pa.Table] = []
    uncached: list[pa.Table] = []
    for result in compute(missing) if missing.num_rows else ():
        result = result.select(["key", *columns])
        if keep is not None:
            mask = pc.fill_null(keep(result), False)
            uncached.append(result.filter(pc.invert(mask)))
            result = result.filter(mask)
        pending.append(result)
        if sum(t.num_rows for t in pending) >= checkpoint_rows:
            cache.add(pa.concat_tables(pending))
            pending.clear()
    if pending:
        cache.add(pa.concat_tables(pending))
    return missing.num_rows, pa.concat_tables(uncached) if uncached else None


def cached(
    cache: TableCache,
    table: pa.Table,
    compute: Callable,
    columns: list[str],
    checkpoint_rows: int,
    keep: Callable[[pa.Table], pa.Array] | None = None,
) -> tuple[pa.Table, int]:
    """`table` with its result `columns` appended, computing (and checkpointing) only rows not cached yet.

    Returns the table and how many rows were computed in this run.
    """
    computed, uncached = fill(cache, table, compute, columns, checkpoint_rows, keep)
    if not table.num_rows:  # nothing asked: empty columns (their types come from results, and there are none)
        for name in columns:
            table = table.append_column(name, pa.nulls(0))
        return table, 0
    keys = table["key"].to_numpy()
    found = cache.contains(keys)
    parts = []
    if found.any():
        parts.append(cache.lookup(keys[found]).append_column("_at", pa.array(np.flatnonzero(found))))
    if not found.all():  # computed now, but not for the cache (e.g. an endpoint's failure, retried next run)
        fresh = {key: i for i, key in enumerate(uncached["key"].to_pylist())}
        rows, all_keys = np.flatnonzero(~found), table["key"].to_pylist()
        extra = uncached.take([fresh[all_keys[i]] for i in rows]).drop(["key"])
        parts.append(extra.append_column("_at", pa.array(rows)))
    results = pa.concat_tables(parts).sort_by("_at")
    for name in columns:
        table = table.append_column(name, results[name])
    return table, computed
