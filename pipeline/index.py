"""FAISS indexes (any factory string, inner product) and k-means topics."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa

from pairforge.pipeline import schema
from pairforge.pipeline.params import IndexParams
from pairforge.pipeline.schema import InputError

log = logging.getLogger("pairforge.index")


def _needs_points(factory: str) -> int:
    """Fewest training vectors a factory string can be trained on (FAISS itself fails less clearly)."""
    lists = [int(n) for n in re.findall(r"IVF(\d+)", factory)]
    return max(lists, default=0)


def auto_factory(count: int, dim: int, params: IndexParams) -> str:
    """The index `factory: auto` picks for `count` vectors of `dim` floats within `memory_budget_mb`.

    Exact search below `exact_below` vectors (it is fast enough there, and nothing beats its recall). Above, HNSW
    (the best recall for its speed) while its float vectors and graph fit the budget; past that, IVF-PQ, whose
    codes take `dim / 4` bytes per vector (4 dimensions per byte-sized sub-quantiser), within the budget too.
    """
    if count < params.exact_below:
        return "Flat"
    budget = params.memory_budget_mb * 2**20
    hnsw_bytes = count * (4 * dim + 2 * 32 * 4 + 16)  # vectors + level-0 links of HNSW32 + bookkeeping
    if hnsw_bytes <= budget:
        return "HNSW32"
    # ~4 * sqrt(n) lists, a power of two, with >= 39 training points per list as FAISS wants.
    lists = 2 ** int(np.clip(np.round(np.log2(4 * np.sqrt(count))), 4, 16))
    for codes in (dim // 4, dim // 8, dim // 16, dim // 32):
        if codes and dim % codes == 0 and count * (codes + 8) <= budget:
            return f"IVF{lists},PQ{codes}"
    raise InputError(
        "params.yaml", None, "index.memory_budget_mb", f"{count} vectors of {dim} floats fit no index in {budget} bytes"
    )


def factory_for(count: int, dim: int, params: IndexParams) -> str:
    return auto_factory(count, dim, params) if params.factory == "auto" else params.factory


def empty(factory: str, dim: int) -> faiss.Index:
    """An untrained, empty inner-product index from a factory string; a string FAISS refuses is the param's error."""
    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise InputError("params.yaml", None, "index.factory", f"FAISS cannot build {factory!r}: {err}") from err


# FAISS trains on at most 256 points per centroid (per k-means topic, IVF list or PQ code: 256 codes of a byte),
# subsampling anything larger itself; reading more of the corpus than that to train would only cost memory.
POINTS_PER_CENTROID = 256
# IVF lists by default train on 64 points each (FAISS warns below 39): at 10M documents `auto` makes 16,384 lists, and
# 256 points per list would be 4.2M vectors (6.4 GB at 384 floats) and hours of k-means on two cores.
POINTS_PER_LIST = 64


def train_rows(count: int, factory: str, params: IndexParams) -> np.ndarray:
    """Which vectors (sorted rows, seeded) train `factory`'s quantisers: `train_size` of them, or by default 64 per
    IVF list and at least as many as a PQ's codes train on (65,536), so training holds a bounded sample however
    large the corpus."""
    needed = _needs_points(factory)
    if count < needed:
        raise InputError(
            "params.yaml", None, "index.factory",
            f"{factory!r} needs at least {needed} training vectors; the corpus has {count}",
        )  # fmt: skip
    size = params.train_size or max(POINTS_PER_LIST * needed, POINTS_PER_CENTROID * POINTS_PER_CENTROID)
    return sample_rows(count, size, params.seed)


def sample_rows(count: int, size: int, seed) -> np.ndarray:
    """`size` of `count` rows drawn with `seed`, in order (all of them when there are no more)."""
    if size >= count:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size, replace=False))


def train(built: faiss.Index, sample: np.ndarray) -> None:
    _skip_polysemous_training(built)
    built.train(sample)


def build(vectors: np.ndarray, params: IndexParams) -> tuple[faiss.Index, str]:
    """The index over `vectors`, held in memory, and the factory string it was built from (the chosen one for
    `auto`). The index stage builds from the corpus's Parquet in chunks instead (pipeline/sharded.py)."""
    factory = factory_for(len(vectors), vectors.shape[1], params)
    built = empty(factory, vectors.shape[1])
    if not built.is_trained:
        train(built, vectors[train_rows(len(vectors), factory, params)])
    built.add(vectors)
    set_search_params(built, params)
    return built, factory


def _skip_polysemous_training(index: faiss.Index) -> None:
    """PQ indexes reorder their codes by default so that Hamming distances approximate real ones, for polysemous
    search, which pairforge does not use: the search results are the same without it, and training takes a
    fraction of the time (IVF32,PQ16 on 3,000 vectors: 28 s -> 0.7 s on two cores)."""
    for layer in (index, faiss.try_extract_index_ivf(index)):
        layer = faiss.downcast_index(layer) if layer is not None else None
        if layer is not None and hasattr(layer, "do_polysemous_training"):
            layer.do_polysemous_training = False


# The deepest efSearch `index.target_recall` raises an HNSW index to (nprobe stops at the index's lists).
EF_SEARCH_LIMIT = 4096


def search_setting(index: faiss.Index) -> tuple[str, int, int] | None:
    """The setting that trades an approximate index's search time for recall: (name, value, the most it can be) for
    nprobe (IVF) or efSearch (HNSW); None for exact search."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None:
        return "nprobe", ivf.nprobe, ivf.nlist
    inner = faiss.downcast_index(index)
    return ("efSearch", inner.hnsw.efSearch, EF_SEARCH_LIMIT) if hasattr(inner, "hnsw") else None


def set_search_setting(index: faiss.Index, name: str, value: int) -> None:
    faiss.ParameterSpace().set_index_parameter(index, name, value)


def set_search_params(index: faiss.Index, params: IndexParams) -> None:
    """nprobe for IVF indexes, efSearch for HNSW ones (read from the index, so `auto` choices get them too). They
    are written with the index: whoever loads it searches as the index stage measured."""
    setting = search_setting(index)
    if setting is not None:
        set_search_setting(index, setting[0], params.nprobe if setting[0] == "nprobe" else params.ef_search)


def write(index: faiss.Index, path: str | Path) -> None:
    faiss.write_index(index, str(path))


def gpus() -> int:
    """GPUs FAISS can use in this process: 0 with faiss-cpu, or where none is visible."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def load(source: str | Path | np.ndarray, gpu: bool = False) -> faiss.Index:
    """An index from its file, memory-mapped (the processes of one machine share a flat index's vectors in the page
    cache instead of each holding a copy), or from its bytes; on this process's GPUs if asked and FAISS has any.
    It searches with the nprobe / efSearch it was written with (the index stage's, tuned to `index.target_recall`)."""
    if isinstance(source, np.ndarray):
        index = faiss.deserialize_index(source)
    else:
        index = faiss.read_index(str(source), faiss.IO_FLAG_MMAP_IFC)
    if gpu and gpus():
        index = faiss.index_cpu_to_all_gpus(index)
    return index


# FAISS's own floor for a centroid it can place (below it, k-means warns and topics hold a document or two).
MIN_DOCS_PER_TOPIC = 39


def topic_count(count: int, params: IndexParams) -> int:
    """How many topics `count` documents make: `index.topics`, or as many as a small corpus has documents for, with
    a warning saying so."""
    k = min(params.topics, max(1, count // MIN_DOCS_PER_TOPIC))
    if k < params.topics:
        log.warning(
            "index.topics is %d, but %d documents make only %d topic(s) of at least %d documents: using %d",
            params.topics, count, k, MIN_DOCS_PER_TOPIC, k,
        )  # fmt: skip
    return k


def topic_rows(count: int, params: IndexParams, k: int) -> np.ndarray:
    """The documents k-means trains on: as many as FAISS would use for `k` centroids, drawn with the index's seed."""
    return sample_rows(count, POINTS_PER_CENTROID * k, [params.seed, k])


def topics(sample: np.ndarray, params: IndexParams, k: int | None = None) -> faiss.Kmeans:
    """Spherical k-means (centroids on the unit sphere, like the vectors) of `k` topics (default: `topic_count` of
    the sample) trained on a sample of the corpus (`topic_rows`)."""
    k = k or topic_count(len(sample), params)
    kmeans = faiss.Kmeans(
        sample.shape[1], k, niter=params.kmeans_iterations, seed=params.seed, spherical=True, verbose=False,
        gpu=gpus() > 0, min_points_per_centroid=1,  # topic_count has warned already, FAISS need not repeat it
    )  # fmt: skip
    kmeans.train(sample)
    return kmeans


def assign(kmeans: faiss.Kmeans, ids: pa.Array, vectors: np.ndarray) -> pa.Table:
    distance, topic = kmeans.index.search(np.ascontiguousarray(vectors), 1)
    return pa.table(
        {"id": ids, "topic": topic[:, 0].astype(np.int32), "distance": distance[:, 0].astype(np.float32)},
        schema=schema.TOPICS,
    )
