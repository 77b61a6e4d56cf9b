"""The only module that knows Ray: start or join a cluster, run pipeline functions in actor pools, stream back.

Stages hand this module a plain class (built once per actor, e.g. to load a model) and a table; workers compute
and the stage process receives the results in input order, so outputs are the same bytes whatever the number of
actors or nodes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa

log = logging.getLogger("pairforge.runtime")


@dataclass(frozen=True)
class Resources:
    """What each actor of a pool asks Ray for; `actors=0` fills the cluster."""

    actors: int = 0
    cpus: float = 1.0
    gpus: float = 0.0


def init() -> None:
    """Start Ray locally, or join the cluster named by RAY_ADDRESS. Idempotent."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or None
    ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    # Input order in, input order out: determinism does not depend on which actor finishes first.
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    resources = ray.cluster_resources()
    log.info(
        "ray: %s, %d node(s), %g CPU, %g GPU",
        address or "local",
        len([n for n in ray.nodes() if n["Alive"]]),
        resources.get("CPU", 0),
        resources.get("GPU", 0),
    )


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


def map_batches(
    table: pa.Table,
    worker: type,
    worker_args: dict,
    resources: Resources,
    rows_per_task: int,
) -> Iterator[pa.Table]:
    """Run `worker(**worker_args)(batch)` over `table` in an actor pool; yield result tables in input order.

    `rows_per_task` sets how much each actor call receives; the worker batches further inside (e.g. by tokens).
    """
    import ray

    init()
    size = pool_size(resources)
    blocks = [table.slice(start, rows_per_task) for start in range(0, table.num_rows, rows_per_task)]
    if not blocks:
        return
    log.info(
        "pool: %d x %s (%g CPU, %g GPU each), %d tasks",
        size,
        worker.__name__,
        resources.cpus,
        resources.gpus,
        len(blocks),
    )
    dataset = ray.data.from_arrow(blocks).map_batches(
        worker,
        fn_constructor_kwargs=worker_args,
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=min(size, len(blocks))),
        num_cpus=resources.cpus,
        num_gpus=resources.gpus,
        zero_copy_batch=True,
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=1)
