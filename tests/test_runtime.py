"""The Ray actor pool: vectors through it equal encode, in input order; a kept pool loads its model once."""

from __future__ import annotations

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
