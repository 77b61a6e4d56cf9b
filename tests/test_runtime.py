"""The Ray actor pool: vectors through it equal encode, in input order; a kept pool loads its model once."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from pipeline import embed, runtime, schema
from tests.conftest import MODEL


def test_vectors_through_the_ray_actor_pool_equal_encode(texts, reference):
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    args = {"model": MODEL, "max_length": 0, "batch_size": 16, "device": "cpu"}
    out = pa.concat_tables(
        runtime.map_batches(table, embed.EmbedBatch, args, runtime.Resources(actors=2), rows_per_task=16)
    )
    assert out["id"].to_pylist() == table["id"].to_pylist(), "results come back in input order"
    assert np.abs(schema.vectors_matrix(out["vector"]) - reference).max() < 1e-5


def pool_actors(name: str) -> dict[str, str]:
    """Pid and state of each actor of class `name` this Ray has started, from its actor table."""
    import ray._private.state as state  # the public state API needs the dashboard, which is off

    return {str(a["Pid"]): a["State"] for a in state.actors().values() if a["ActorClassName"] == name}


def test_a_kept_pool_loads_its_model_once_and_gives_way_to_any_other_pool(texts, reference):
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    args = {"model": MODEL, "max_length": 0, "batch_size": 16, "device": "cpu"}

    def run(keep: bool) -> pa.Table:
        return pa.concat_tables(
            runtime.map_batches(table, embed.EmbedBatch, args, runtime.Resources(actors=2), 16, keep=keep)
        )

    first = run(keep=True)
    actors = pool_actors("EmbedBatch")
    assert list(actors.values()) == ["ALIVE", "ALIVE"], actors
    second = run(keep=True)
    assert pool_actors("EmbedBatch") == actors, "the second call ran on the first one's actors: one model load"
    for out in (first, second):
        assert out["id"].to_pylist() == table["id"].to_pylist(), "results come back in input order"
        assert np.abs(schema.vectors_matrix(out["vector"]) - reference).max() < 1e-5
    # Any other pool ends the kept one first: on this 2-CPU machine it would otherwise wait for CPUs forever.
    assert run(keep=False).equals(first)
    assert pool_actors("EmbedBatch") == dict.fromkeys(actors, "DEAD")


def test_kept_pools_stay_side_by_side_while_they_fit_and_the_oldest_gives_way():
    """Two judges' pools that fit together both stay loaded; one that needs the whole cluster ends them first."""

    class Where:  # an actor body that says which process ran each row
        def __init__(self, name: str):
            self.name = name

        def __call__(self, batch: pa.Table) -> pa.Table:
            return batch.append_column("pid", pa.array([os.getpid()] * batch.num_rows, pa.int64()))

    table = pa.table({"x": [1, 2, 3, 4]})

    def pids(name: str, actors: int) -> set[int]:
        resources = runtime.Resources(actors=actors)
        out = pa.concat_tables(runtime.map_batches(table, Where, {"name": name}, resources, 2, keep=True))
        return set(out["pid"].to_pylist())

    first, second = pids("first", 1), pids("second", 1)
    assert pids("first", 1) == first and pids("second", 1) == second, "both kept: no actor started again"
    whole = pids("whole", int(runtime.cluster_resources()["CPU"]))  # cannot fit beside either
    assert not whole & (first | second)
    assert pids("second", 1) != second, "the older pools were ended to make room"
    runtime.release_kept_pools()
