"""The only module that knows Ray: start or join a cluster, run pipeline functions in actor pools, stream back.

Stages hand this module a plain class (built once per actor, e.g. to load a model) and a table; workers compute
and the stage process receives the results in input order, so outputs are the same bytes whatever the number of
actors or nodes.

Small work runs in the stage's own process, with no Ray at all: starting Ray and an actor pool costs seconds per
stage (about 10 on two cores), more than a few hundred rows of any step. `PAIRFORGE_IN_PROCESS_ROWS` sets "small";
it says where work runs, never what it computes, so it is an environment setting and not a DVC param.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from pairforge.pipeline import progress

log = logging.getLogger("pairforge.runtime")


@dataclass(frozen=True)
class Resources:
    """What each actor of a pool asks Ray for; `actors=0` fills the cluster."""

    actors: int = 0
    cpus: float = 1.0
    gpus: float = 0.0


def _not_token_news(record: logging.LogRecord) -> bool:
    """Ray warns, at every start of a local cluster, that it turned its default token authentication on: news once,
    noise in every stage's log. Its warning that authentication is *off* still shows. (One function, so that adding
    it at every start adds it once.)"""
    return "Token authentication is enabled" not in record.getMessage()


def init() -> None:
    """Start Ray locally, or join the cluster named by RAY_ADDRESS. Idempotent."""
    import ray

    if ray.is_initialized():
        return
    # "local" starts a fresh local Ray: without it, ray.init() joins whichever cluster `ray start` last started on
    # this machine, so a stage's work would land on a cluster the user did not name.
    address = os.environ.get("RAY_ADDRESS") or "local"
    logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(_not_token_news)
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    resources = ray.cluster_resources()
    log.info(
        "ray: %s, %d node(s), %g CPU, %g GPU",
        address,
        len([n for n in ray.nodes() if n["Alive"]]),
        resources.get("CPU", 0),
        resources.get("GPU", 0),
    )


ACTOR_RETRIES = 3
# Work of at most this many rows runs in the stage process (see the module's docstring); 0 always uses Ray.
IN_PROCESS_ROWS = 1000


def in_process_rows() -> int:
    value = os.environ.get("PAIRFORGE_IN_PROCESS_ROWS", str(IN_PROCESS_ROWS))
    if not value.isdigit():
        raise ValueError(f"PAIRFORGE_IN_PROCESS_ROWS must be a whole number of rows, not {value!r}")
    return int(value)


def _runs_in_process(rows: int, resources: Resources) -> bool:
    """Small CPU work on a local run. A named cluster (RAY_ADDRESS) always gets the work, and so does a machine
    with a GPU: a worker in this process would see the GPU that Ray hides from a CPU actor, and compute otherwise."""
    if os.environ.get("RAY_ADDRESS") or resources.gpus or rows > in_process_rows():
        return False
    import torch  # the workers' own test for a GPU (device "auto")

    return not torch.cuda.is_available()


def cluster_resources() -> dict[str, float]:
    import ray

    init()
    return dict(ray.cluster_resources())


def pool_size(resources: Resources) -> int:
    if resources.actors:
        return resources.actors
    available = cluster_resources()
    if resources.gpus:
        return max(1, int(available.get("GPU", 0) // resources.gpus))
    return max(1, int(available.get("CPU", 1) // resources.cpus))


class Shared:
    """A `worker_args` value that a Ray pool puts in the object store once: each node holds one copy, and actors
    read it from there (Arrow and numpy without copying) instead of each unpickling its own from the actor's
    definition. Work that runs in the stage process takes the value itself."""

    def __init__(self, value):
        self.value = value
        self._ref = None

    def ref(self):
        import ray

        if self._ref is None:
            self._ref = ray.put(self.value)
        return self._ref


class WorkerFiles(Shared):
    """Files of the stage's process as workers can read them: their paths in this process and wherever every node
    of the cluster is this machine (a local Ray, a loopback cluster), else their bytes, shared."""

    def ref(self):
        import ray

        if _all_local():
            return self.value
        if self._ref is None:
            self._ref = ray.put([np.fromfile(path, dtype=np.uint8) for path in self.value])
        return self._ref


def _all_local() -> bool:
    """Every node of the cluster is this machine (a local Ray, a loopback cluster): workers can read its files."""
    import ray

    here = ray.util.get_node_ip_address()
    return all(node["NodeManagerAddress"] == here for node in ray.nodes() if node["Alive"])


class RemoteShard:
    """A shard of an index that a search actor holds: searched as a `sharded.ShardSearch` is, over Ray; the
    actors serving one shard take its searches in turn."""

    def __init__(self, actors: list, size: int, exact: bool):
        self.actors, self.size, self.exact, self.turn = actors, size, exact, 0

    def facts(self) -> tuple[int, bool]:
        return self.size, self.exact

    def send(self, vectors: np.ndarray, k: int):
        self.turn += 1
        return self.actors[self.turn % len(self.actors)].search.remote(vectors, k)

    @staticmethod
    def collect(sent) -> tuple[np.ndarray, np.ndarray]:
        import ray

        return ray.get(sent)


class ShardServers(Shared):
    """Index shards served by search actors, `per_shard` of them holding each shard and nothing else, as a
    `worker_args` value: workers in a pool get a `RemoteShard` per shard and search through them, so no machine
    maps more of the index than the shards its actors serve. Work in the stage process (`value`: the files) loads
    the shards itself. The actors end with the pool (`close`)."""

    def __init__(self, paths: list[str], server: type, server_args: dict, per_shard: int, resources: Resources):
        super().__init__(paths)
        self.server, self.server_args, self.per_shard, self.resources = server, server_args, per_shard, resources
        self.actors: list = []

    def ref(self):
        import ray

        if self._ref is None:
            available = cluster_resources()
            if self.resources.gpus and not available.get("GPU", 0):
                raise RuntimeError(f"{self.server.__name__} asks for {self.resources.gpus} GPU; this cluster has none")
            # more search actors than CPUs share them: an actor Ray cannot place would wait forever
            cpus = min(self.resources.cpus, available.get("CPU", 1) / (len(self.value) * self.per_shard))
            serve = ray.remote(num_cpus=cpus, num_gpus=self.resources.gpus, max_restarts=ACTOR_RETRIES,
                               max_task_retries=ACTOR_RETRIES)(self.server)  # fmt: skip
            local = _all_local()
            shards = []
            for path in self.value:
                source = path if local else ray.put(np.fromfile(path, dtype=np.uint8))
                actors = [serve.remote(source, **self.server_args) for _ in range(self.per_shard)]
                self.actors += actors
                shards.append(RemoteShard(actors, *ray.get(actors[0].facts.remote())))
            log.info("%d search actor(s) per shard, %d shard(s)", self.per_shard, len(self.value))
            self._ref = ray.put(shards)  # handed to the pool with each task, as other shared values are
        return self._ref

    def close(self) -> None:
        import ray

        for actor in self.actors:
            ray.kill(actor)
        self.actors, self._ref = [], None


def share(value) -> Shared:
    return Shared(value)


def files_for_workers(paths: list[Path]) -> WorkerFiles:
    return WorkerFiles([str(path.resolve()) for path in paths])


# Actor pools kept between calls (see `map_batches(keep=True)`), oldest first: key -> (actors, Ray's ActorPool).
_kept: dict[tuple, tuple[list, object]] = {}


# Workers kept in the stage process, the in-process counterpart of `_kept`: key -> the worker.
_kept_in_process: dict[tuple, object] = {}


def release_kept_pools(keys: list[tuple] | None = None) -> None:
    """End kept pools' actors (all of them by default), giving their CPUs and GPUs back to the cluster."""
    if keys is None:
        _kept_in_process.clear()
    for key in list(_kept) if keys is None else keys:
        import ray

        for actor in _kept.pop(key)[0]:
            ray.kill(actor)


def _in_process(
    blocks: list[pa.Table], worker: type, worker_args: dict, resources: Resources, keep: bool
) -> Iterator[pa.Table]:
    """`map_batches` without Ray: one worker in this process, the same tasks in the same order, on the threads an
    actor of `resources` would have (Ray sets its OMP_NUM_THREADS): a FAISS search's bytes depend on them."""
    from threadpoolctl import threadpool_limits

    threads = max(1, int(resources.cpus))
    key = (worker, repr(sorted(worker_args.items())))
    instance = _kept_in_process.get(key)
    log.info(
        "in process: %s, %d tasks%s",
        worker.__name__,
        len(blocks),
        "" if not keep else ", kept worker" if instance else ", new worker, kept",
    )
    if instance is None:
        instance = worker(**{name: v.value if isinstance(v, Shared) else v for name, v in worker_args.items()})
        if keep:
            _kept_in_process[key] = instance
    for block in blocks:
        with threadpool_limits(threads):  # the libraries the worker loaded, on this task only
            result = instance(block)
        yield result


def _fits(resources: Resources, size: int) -> bool:
    import ray

    free = ray.available_resources()
    return free.get("CPU", 0) >= size * resources.cpus and free.get("GPU", 0) >= size * resources.gpus


def _make_room(resources: Resources, size: int) -> None:
    """End kept pools, oldest first, until `size` actors of `resources` fit: a pool waiting for CPUs or GPUs that
    another pool holds would wait forever."""
    while _kept and not _fits(resources, size):
        release_kept_pools([next(iter(_kept))])
        # Ray frees a killed actor's resources a moment later: wait for them before ending another pool.
        deadline = time.monotonic() + 2.0
        while not _fits(resources, size) and time.monotonic() < deadline:
            time.sleep(0.05)


def _actor_pool(worker: type, worker_args: dict, resources: Resources, size: int, keep: bool):
    """(actors, Ray's ActorPool, whether it is new) for this worker, arguments and resources: the kept one, or a
    new one. Older kept pools stay while the new one fits beside them (a cross-encoder and an LLM judge on a
    cluster with room for both)."""
    import ray
    from ray.util import ActorPool

    key = (worker, repr(sorted(worker_args.items())), resources, size)
    if keep and key in _kept:
        _kept[key] = _kept.pop(key)  # the most recently used is the last to be ended
        return *_kept[key], False
    _make_room(resources, size)

    def __init__(self, arguments: dict):
        self.arguments, self.work = arguments, None

    def run(self, batch: pa.Table, **shared) -> pa.Table:
        # The shared values come with each task, resolved from the object store by Ray, and the worker is built on
        # the first: a reference among an actor's constructor arguments is one a restarted actor may find gone
        # (Ray warns about every such actor), a task's is fetched again when the task is retried.
        if self.work is None:
            self.work = worker(**self.arguments, **shared)
        return self.work(batch)

    # Named after the worker, so the cluster's actor table says what each one is. A dead actor (killed, OOM, lost
    # node) is restarted and its task retried a few times, then the call fails: a batch that kills every actor it
    # reaches must not hang the stage.
    actor = ray.remote(
        num_cpus=resources.cpus, num_gpus=resources.gpus, max_restarts=ACTOR_RETRIES, max_task_retries=ACTOR_RETRIES
    )(type(worker.__name__, (), {"__init__": __init__, "run": run}))
    plain = {name: value for name, value in worker_args.items() if not isinstance(value, ray.ObjectRef)}
    actors = [actor.remote(plain) for _ in range(size)]
    pool = ActorPool(actors)
    if keep:
        _kept[key] = (actors, pool)
    return actors, pool, True


def map_batches(
    table: pa.Table,
    worker: type,
    worker_args: dict,
    resources: Resources,
    rows_per_task: int,
    keep: bool = False,
) -> Iterator[pa.Table]:
    """Run `worker(**worker_args)(batch)` over `table` in an actor pool; yield result tables in input order.

    `rows_per_task` sets how much each actor call receives; the worker batches further inside (e.g. by tokens).
    `keep=True` keeps the pool's actors, with what they loaded, for the next call with the same worker, arguments
    and resources: for a stage that calls one model again and again (the filter's refill rounds and query shards),
    which would otherwise load it once per call. Kept pools stay side by side while the cluster has room for them;
    the oldest give way to a pool that would not fit. Other pools end with the call.
    """
    blocks = [table.slice(start, rows_per_task) for start in range(0, table.num_rows, rows_per_task)]
    if not blocks:
        return
    if _runs_in_process(table.num_rows, resources):
        in_process = _in_process(blocks, worker, worker_args, resources, keep)
        yield from progress.tracked(in_process, worker.__name__, table.num_rows)
        return
    import ray

    init()
    if resources.gpus and not cluster_resources().get("GPU", 0):
        # Ray would wait for a GPU forever; say so instead.
        raise RuntimeError(f"{worker.__name__} asks for {resources.gpus} GPU per actor; this Ray cluster has no GPU")
    servers = [value for value in worker_args.values() if isinstance(value, ShardServers)]
    worker_args = {name: value.ref() if isinstance(value, Shared) else value for name, value in worker_args.items()}
    size = pool_size(resources) if keep else min(pool_size(resources), len(blocks))
    actors, pool, started = _actor_pool(worker, worker_args, resources, size, keep)
    log.info(
        "pool: %d x %s (%g CPU, %g GPU each), %d tasks%s",
        size,
        worker.__name__,
        resources.cpus,
        resources.gpus,
        len(blocks),
        "" if not keep else ", new actors, kept" if started else ", kept actors",
    )
    shared = {name: value for name, value in worker_args.items() if isinstance(value, ray.ObjectRef)}
    results = pool.map(lambda actor, block: actor.run.remote(block, **shared), blocks)
    try:
        yield from progress.tracked(results, worker.__name__, table.num_rows)
    except BaseException:  # a failed or abandoned map leaves tasks behind: start afresh next time
        if keep:
            release_kept_pools([key for key, (_, kept) in _kept.items() if kept is pool])
        raise
    finally:
        if not keep:
            for actor in actors:
                ray.kill(actor)
            for value in servers:
                value.close()
