"""Result caches without Ray: shards stored atomically, rows returned in the order asked, only missing rows computed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pairforge.pipeline import schema
from pairforge.pipeline.shard_cache import EmbeddingCache, TableCache, cached, row_keys, whole_tasks


def test_cache_stores_shards_atomically_and_finds_them_again(tmp_path):
    settings = {"model": "m", "max_length": 0}
    cache = EmbeddingCache(tmp_path, settings)
    keys = row_keys(pa.array(["a", "b", "c", "a"]))
    assert keys[0] == keys[3] and len(set(keys[:3].tolist())) == 3
    vectors = np.random.default_rng(0).random((2, 4), dtype=np.float32)
    cache.add(pa.table({"key": keys[:2], "vector": schema.vectors_column(vectors), "truncated": [True, False]}))
    (cache.folder / ".tmp-999-shard-dead").mkdir()  # a shard a killed run was writing
    reopened = EmbeddingCache(tmp_path, settings)
    assert not list(cache.folder.glob(".tmp-*")), "half-written shards are swept away"
    assert reopened.contains(keys).tolist() == [True, True, False, True]
    found = reopened.lookup(keys[[3, 1]])
    assert np.array_equal(schema.vectors_matrix(found["vector"]), vectors[[0, 1]])
    assert found["truncated"].to_pylist() == [True, False]
    with pytest.raises(KeyError, match="1 rows are not in the cache"):
        reopened.lookup(keys[[2]])
    assert len(EmbeddingCache(tmp_path, {**settings, "max_length": 64})) == 0, "other settings, other vectors"


def test_table_cache_returns_rows_in_the_order_asked_across_shards(tmp_path):
    cache = TableCache(tmp_path, {"judge": "x"})
    keys = row_keys(pa.array(["q1", "q2", "q3"]), pa.array(["d", "d", "d"]))
    assert len(set(keys.tolist())) == 3 and row_keys(pa.array(["q1"]), pa.array(["d"]))[0] == keys[0]
    cache.add(pa.table({"key": keys[:2], "score": [0.1, 0.2], "raw": ["a", None]}))
    cache.add(pa.table({"key": keys[2:], "score": [0.3], "raw": ["c"]}))
    got = TableCache(tmp_path, {"judge": "x"}).lookup(keys[[2, 0, 1, 2]])
    assert got.to_pydict() == {"score": [0.3, 0.1, 0.2, 0.3], "raw": ["c", "a", None, "c"]}


def test_cached_computes_only_missing_rows_in_order_and_keeps_transient_failures_out(tmp_path):
    """The driver of every cache, without Ray: each key computed once, shards of whole tasks, failures retried."""
    calls: list[list[str]] = []

    def compute(rows: pa.Table):  # tasks of 2 rows, like an actor pool's, in input order
        calls.append(rows["text"].to_pylist())
        for start in range(0, rows.num_rows, 2):
            task = rows.slice(start, 2)
            failed = [t.startswith("flaky") for t in task["text"].to_pylist()]
            yield task.append_column(
                "score", pa.array([None if f else len(t) for f, t in zip(failed, task["text"].to_pylist())], pa.int64())
            ).append_column("error", pa.array(failed))

    def answered(results: pa.Table) -> pa.Array:
        return pc.invert(results["error"])

    texts = ["aa", "b", "aa", "flaky", "cccc"]
    table = pa.table({"text": texts, "key": pa.array(row_keys(pa.array(texts)), pa.uint64())})
    cache = TableCache(tmp_path, {"judge": "length"})
    out, computed = cached(cache, table, compute, ["score", "error"], whole_tasks(3, 2), answered)
    assert computed == 4 and calls == [["aa", "b", "flaky", "cccc"]], "a repeated text is computed once"
    assert out["score"].to_pylist() == [2, 1, 2, None, 4] and out["error"].to_pylist() == [False] * 3 + [True, False]
    assert len(list(cache.folder.glob("shard-*"))) == 2, "a shard per 2 tasks of 2 rows, then the rest"
    again, computed = cached(TableCache(tmp_path, {"judge": "length"}), table, compute, ["score", "error"], 4, answered)
    assert computed == 1 and calls[-1] == ["flaky"], "only the failure is asked again"
    assert again.to_pydict() == out.to_pydict()


def test_rows_that_differ_never_share_a_key_whatever_their_texts_hold():
    # Joined with a separator, ("a<sep>b", "c") and ("a", "b<sep>c") were one key: one cached judgement served both.
    first = row_keys(pa.array(["query\x1fpassage", "q"]), pa.array(["more", "p\x1f"]))
    second = row_keys(pa.array(["query", "q\x1fp"]), pa.array(["passage\x1fmore", ""]))
    assert (first != second).all()
    assert len(set(row_keys(pa.array(["ab", "a", ""]), pa.array(["", "b", "ab"])).tolist())) == 3
    again = row_keys(pa.array(["query\x1fpassage", "q"]), pa.array(["more", "p\x1f"]))
    assert (first == again).all(), "equal rows share a key"
