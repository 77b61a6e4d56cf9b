"""The Ray actor pool: vectors through it equal encode, in input order; a kept pool loads its model once. Small
work runs in the calling process instead, with the same results and no Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from pairforge.pipeline import embed, runtime, schema
from pairforge.pipeline.schema import EndpointError
from tests.conftest import MODEL, REPO


@pytest.fixture
def ray_pools(monkeypatch):
    """Every call in a Ray pool, however small its table."""
    monkeypatch.setenv("PAIRFORGE_IN_PROCESS_ROWS", "0")


@pytest.mark.usefixtures("ray_pools")
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


@pytest.mark.usefixtures("ray_pools")
def test_a_kept_pool_loads_its_model_once_and_gives_way_to_any_other_pool(texts, reference):
    texts, reference = texts[::4], reference[::4]  # enough for two tasks per actor; the subject is the pool
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    args = {"model": MODEL, "max_length": 0, "batch_size": 16, "device": "cpu"}

    def run(keep: bool) -> pa.Table:
        return pa.concat_tables(
            runtime.map_batches(table, embed.EmbedBatch, args, runtime.Resources(actors=2), 16, keep=keep)
        )

    def alive() -> set[str]:  # other tests' pools, ended, are in the table too
        return {pid for pid, state in pool_actors("EmbedBatch").items() if state == "ALIVE"}

    first = run(keep=True)
    actors = alive()
    assert len(actors) == 2, pool_actors("EmbedBatch")
    second = run(keep=True)
    assert alive() == actors, "the second call ran on the first one's actors: one model load"
    for out in (first, second):
        assert out["id"].to_pylist() == table["id"].to_pylist(), "results come back in input order"
        assert np.abs(schema.vectors_matrix(out["vector"]) - reference).max() < 1e-5
    # Any other pool ends the kept one first: on this 2-CPU machine it would otherwise wait for CPUs forever.
    assert run(keep=False).equals(first)
    assert alive() == set(), "the kept pool gave way, and the call's own pool ended with the call"
    assert {pid: pool_actors("EmbedBatch")[pid] for pid in actors} == dict.fromkeys(actors, "DEAD")


@pytest.mark.usefixtures("ray_pools")
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


SMALL_WORK = """
import json, os, sys
import pyarrow as pa
import ray
from pairforge.pipeline import runtime

class Where:
    def __init__(self, offset):
        self.offset = offset
        self.loads = getattr(Where, "loads", 0) + 1
        Where.loads = self.loads

    def __call__(self, batch):
        pid = pa.array([os.getpid()] * batch.num_rows, pa.int64())
        return batch.append_column("pid", pid).append_column("y", pa.compute.add(batch["x"], self.offset))

table = pa.table({"x": list(range(int(sys.argv[1])))})
args = {"offset": runtime.share(10)}
for keep in (False, True, True):
    out = pa.concat_tables(runtime.map_batches(table, Where, args, runtime.Resources(actors=2), 3, keep=keep))
    assert out["y"].to_pylist() == [x + 10 for x in range(table.num_rows)], out
    print(json.dumps([sorted(set(out["pid"].to_pylist())), ray.is_initialized(), getattr(Where, "loads", 0)]))
"""


def run_small_work(rows: int, setting: str | None) -> list[list]:
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "PAIRFORGE_IN_PROCESS_ROWS")}
    env.update({"PAIRFORGE_IN_PROCESS_ROWS": setting} if setting is not None else {})
    done = subprocess.run(
        [sys.executable, "-c", SMALL_WORK, str(rows)], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("[")]


def test_small_work_runs_in_the_calling_process_without_starting_ray():
    """Below PAIRFORGE_IN_PROCESS_ROWS (default 1000) rows: no Ray, a kept worker built once and used again, shared
    arguments passed as themselves; above it, or with the setting at 0, Ray actors in other processes."""
    in_process = run_small_work(7, None)  # per call: [pids], whether Ray started, worker loads so far
    assert [loads for _, _, loads in in_process] == [1, 2, 2], "not kept: built again; kept: one load for two calls"
    assert all(not started and len(pids) == 1 for pids, started, _ in in_process), in_process
    assert len({pids[0] for pids, _, _ in in_process}) == 1, "all in one process"
    pids, started, _ = run_small_work(12, "10")[0]  # (setting 0, every call in Ray: the tests above)
    assert started and len(pids) == 2, "above the setting: two actors, neither the calling process"


def test_a_bad_in_process_setting_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("PAIRFORGE_IN_PROCESS_ROWS", "many")
    table = pa.table({"x": [1]})
    with pytest.raises(ValueError, match="PAIRFORGE_IN_PROCESS_ROWS"):
        list(runtime.map_batches(table, object, {}, runtime.Resources(actors=1), 1))


class FlatSearch:
    """An actor body holding a FAISS index over random unit vectors, returning each query row's top-100 scores."""

    def __init__(self, docs: int, dim: int):
        import faiss

        rng = np.random.default_rng(0)
        vectors = rng.normal(size=(docs, dim)).astype(np.float32)
        self.index = faiss.IndexFlatIP(dim)
        self.index.add(vectors / np.linalg.norm(vectors, axis=1, keepdims=True))

    def __call__(self, batch: pa.Table) -> pa.Table:
        scores, _ = self.index.search(schema.vectors_matrix(batch["vector"]), 100)
        return batch.append_column("scores", pa.array(list(scores)))


def test_work_in_the_stage_process_searches_on_an_actors_threads_and_gives_its_bytes(monkeypatch):
    """FAISS's exact search rounds differently on two threads than on one (SciFact's 809 queries over 5,183
    documents moved the mined candidates): the stage process runs a 1-CPU worker's task on one thread, as Ray
    runs the actor, so the results are the same bytes either way."""
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(800, 384)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    table = pa.table({"vector": schema.vectors_column(queries)})
    args, resources = {"docs": 5000, "dim": 384}, runtime.Resources(actors=1, cpus=1)
    in_process = pa.concat_tables(runtime.map_batches(table, FlatSearch, args, resources, 4096))
    monkeypatch.setenv("PAIRFORGE_IN_PROCESS_ROWS", "0")
    in_ray = pa.concat_tables(runtime.map_batches(table, FlatSearch, args, resources, 4096))
    assert in_process["scores"].equals(in_ray["scores"])


class DiesOnEveryBatch:
    """An actor body whose every task kills its process, as a batch that exhausts memory would; each try is
    written down first."""

    def __init__(self, tries: str):
        self.tries = tries

    def __call__(self, batch: pa.Table) -> pa.Table:
        with open(self.tries, "a") as handle:
            handle.write("try\n")
        os._exit(1)


@pytest.mark.usefixtures("ray_pools")
@pytest.mark.parametrize("keep", [False, True])
def test_a_batch_that_kills_every_actor_it_reaches_fails_after_the_retries(keep, tmp_path):
    """Ray restarts a dead actor and retries its task ACTOR_RETRIES times; then the call fails, never hangs (Ray
    Data's default is to retry forever). Both pools: a call's own, and a kept one."""
    import ray

    tries = tmp_path / "tries"
    table = pa.table({"text": ["a", "b"]})
    with pytest.raises(ray.exceptions.RayError):
        list(runtime.map_batches(table, DiesOnEveryBatch, {"tries": str(tries)}, runtime.Resources(actors=1),
                                 rows_per_task=2, keep=keep))  # fmt: skip
    assert tries.read_text().count("try") == runtime.ACTOR_RETRIES + 1


class RefusedEndpoint:
    """An actor body whose endpoint refuses the work."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        raise EndpointError("the endpoint http://127.0.0.1:9/v1 (model 'm') refused the request (HTTP 401)")


@pytest.mark.usefixtures("ray_pools")
@pytest.mark.parametrize("keep", [False, True])
def test_an_error_a_worker_raises_reaches_the_stage_as_its_own_line(keep):
    """Ray wraps a worker's exception (a traceback for a message); the stage finds the error inside and prints that
    alone, from either pool."""
    from pairforge.common import reportable

    table = pa.table({"text": ["a"]})
    with pytest.raises(Exception) as raised:
        list(runtime.map_batches(table, RefusedEndpoint, {}, runtime.Resources(actors=1), rows_per_task=1, keep=keep))
    found = reportable(raised.value)
    assert type(found) is EndpointError
    assert str(found) == "the endpoint http://127.0.0.1:9/v1 (model 'm') refused the request (HTTP 401)"
