"""Caches of expensive per-row results (embeddings, LLM edits, judge scores), keyed by settings + row content.

They do two jobs. Incremental rebuilds: a row already computed with the same model and settings is never
computed again, so adding 1% new documents embeds only those. Resume: a stage adds each finished shard as soon
as its results arrive, so a run killed at any point (SIGKILL included) loses only the shards in flight.

Layout: `<root>/<settings key>/shard-<digest>` plus a `settings.json` saying what the folder holds. A shard is
written under a temporary name and renamed into place, so it is either whole or absent. The index held in
memory is 16 bytes per cached row (key, shard, row); values are read back only for the rows asked for.

`fill` and `cached` drive a computation through a cache: they take any `compute(rows)` that yields result
tables in input order (`pipeline.work` passes its Ray actor pool), so this module knows no Ray.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pairforge.pipeline import artifacts, ownership
from pairforge.pipeline.schema import vectors_column, vectors_matrix


def row_keys(*columns: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit content hash per row of the given string columns (blake2b); equal rows share a key. Several columns
    are hashed length-prefixed, so no text holding a separator makes two different rows one key."""
    values = zip(*(column.to_pylist() for column in columns))
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(_joined(v), digest_size=8).digest(), "little") for v in values),
        dtype=np.uint64,
        count=len(columns[0]),
    )


def _joined(values: tuple[str, ...]) -> bytes:
    if len(values) == 1:  # one column: its bytes, as the caches written before keyed it
        return values[0].encode()
    encoded = [value.encode() for value in values]
    return b"".join(len(value).to_bytes(8, "little") + value for value in encoded)


def settings_key(settings: dict) -> str:
    """Cache folder name for everything that changes a result (model fingerprint, length limit, prompt, ...)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ShardCache:
    """The key index shared by the cache kinds; subclasses say how a shard's values are stored and read."""

    def __init__(self, root: str | Path, settings: dict):
        self.folder = Path(root) / settings_key(settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        settings_file = self.folder / "settings.json"  # for a person deciding which folders to delete
        if not settings_file.exists():
            text = json.dumps(settings, indent=2, sort_keys=True, default=str) + "\n"
            artifacts.write_text_atomically(settings_file, text)
        ownership.sweep(self.folder)  # shards that killed runs were still writing; live writers' are left alone
        self._shards: list[Path] = sorted(self.folder.glob("shard-*"))
        parts = [self._read_keys(shard) for shard in self._shards]
        keys = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        shard_of = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
        row_of = np.concatenate([np.arange(len(p), dtype=np.int32) for p in parts]) if parts else shard_of
        order = np.argsort(keys, kind="stable")
        self._keys, self._shard_of, self._row_of = keys[order], shard_of[order], row_of[order]

    def __len__(self) -> int:
        return len(self._keys)

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Position of each key in the sorted index, or -1 when it is not cached."""
        at = np.searchsorted(self._keys, keys)
        found = at < len(self._keys)
        found[found] = self._keys[at[found]] == keys[found]
        return np.where(found, at, -1)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        return self._find(keys) >= 0

    def add(self, results: pa.Table) -> None:
        """Store one shard of results (a `key` column plus the values); durable when this returns."""
        if not results.num_rows:
            return
        keys = results["key"].to_numpy()
        final = self.folder / f"shard-{hashlib.sha256(keys.tobytes()).hexdigest()[:16]}{self.SUFFIX}"
        artifacts.write_atomically(final, lambda tmp: self._write(tmp, results))
        shard = len(self._shards)
        self._shards.append(final)
        order = np.argsort(merged := np.concatenate([self._keys, keys]), kind="stable")
        self._keys = merged[order]
        self._shard_of = np.concatenate([self._shard_of, np.full(len(keys), shard, np.int32)])[order]
        self._row_of = np.concatenate([self._row_of, np.arange(len(keys), dtype=np.int32)])[order]

    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at = self._find(keys)
        if (at < 0).any():
            raise KeyError(f"{int((at < 0).sum())} rows are not in the cache {self.folder}")
        return self._shard_of[at], self._row_of[at]


class EmbeddingCache(ShardCache):
    """Vectors (float32, memory-mapped on read) and truncation flags per text key."""

    SUFFIX = ""

    @staticmethod
    def _read_keys(shard: Path) -> np.ndarray:
        return np.load(shard / "keys.npy")

    @staticmethod
    def _write(tmp: Path, results: pa.Table) -> None:
        tmp.mkdir()
        np.save(tmp / "keys.npy", results["key"].to_numpy())
        np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors_matrix(results["vector"]), dtype=np.float32))
        np.save(tmp / "truncated.npy", results["truncated"].to_numpy(zero_copy_only=False))

    def lookup(self, keys: np.ndarray) -> pa.Table:
        """`vector` and `truncated` for keys that are all cached, in the order given."""
        shard_of, row_of = self._locate(keys)
        vectors, truncated = None, np.empty(len(keys), dtype=bool)
        for shard in np.unique(shard_of):
            rows = shard_of == shard
            block = np.load(self._shards[shard] / "vectors.npy", mmap_mode="r")
            if vectors is None:
                vectors = np.empty((len(keys), block.shape[1]), dtype=np.float32)
            vectors[rows] = block[row_of[rows]]
            truncated[rows] = np.load(self._shards[shard] / "truncated.npy")[row_of[rows]]
        if vectors is None:
            raise ValueError("lookup of no texts")
        return pa.table({"vector": vectors_column(vectors), "truncated": truncated})


class TableCache(ShardCache):
    """Result columns (any Arrow types) per row key, in Parquet shards."""

    SUFFIX = ".parquet"

    @staticmethod
    def _read_keys(shard: Path) -> np.ndarray:
        return pq.read_table(shard, columns=["key"])["key"].to_numpy()

    @staticmethod
    def _write(tmp: Path, results: pa.Table) -> None:
        pq.write_table(results, tmp)

    def lookup(self, keys: np.ndarray) -> pa.Table:
        """The cached result rows (without `key`) for keys that are all cached, in the order given."""
        shard_of, row_of = self._locate(keys)
        pieces, positions = [], []
        for shard in np.unique(shard_of):
            rows = np.flatnonzero(shard_of == shard)
            pieces.append(pq.read_table(self._shards[shard]).drop(["key"]).take(row_of[rows]))
            positions.append(rows)
        table = pa.concat_tables(pieces)
        return table.take(np.argsort(np.concatenate(positions), kind="stable"))


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
    try:
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
    finally:  # a computation that fails (an endpoint gone, say) keeps what it finished: the next run resumes there
        if pending:
            cache.add(pa.concat_tables(pending))
    return missing.num_rows, pa.concat_tables(uncached) if uncached else None


def cached(
    cache: ShardCache,
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
