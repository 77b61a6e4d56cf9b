"""FAISS indexes (any factory string, inner product) and k-means topics."""

from __future__ import annotations

import logging
import re

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


def build(vectors: np.ndarray, params: IndexParams) -> tuple[faiss.Index, str]:
    """The index over `vectors` and the factory string it was built from (the chosen one for `auto`)."""
    dim = vectors.shape[1]
    factory = auto_factory(len(vectors), dim, params) if params.factory == "auto" else params.factory
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise InputError("params.yaml", None, "index.factory", f"FAISS cannot build {factory!r}: {err}") from err
    if not index.is_trained:
        needed = _needs_points(factory)
        if len(vectors) < needed:
            raise InputError(
                "params.yaml",
                None,
                "index.factory",
                f"{factory!r} needs at least {needed} training vectors; the corpus has {len(vectors)}",
            )
        # `auto` trains on 256 points per IVF list at most (FAISS's own cap); a set train_size wins.
        train_size = params.train_size or (256 * needed if params.factory == "auto" else 0)
        sample = vectors
        if train_size and len(vectors) > train_size:
            rows = np.random.default_rng(params.seed).choice(len(vectors), train_size, replace=False)
            sample = vectors[np.sort(rows)]
        _skip_polysemous_training(index)
        index.train(sample)
    index.add(vectors)
    set_search_params(index, params)
    return index, factory


def _skip_polysemous_training(index: faiss.Index) -> None:
    """PQ indexes reorder their codes by default so that Hamming distances approximate real ones, for polysemous
    search, which pairforge does not use: the search results are the same without it, and training takes a
    fraction of the time (IVF32,PQ16 on 3,000 vectors: 28 s -> 0.7 s on two cores)."""
    for layer in (index, faiss.try_extract_index_ivf(index)):
        layer = faiss.downcast_index(layer) if layer is not None else None
        if layer is not None and hasattr(layer, "do_polysemous_training"):
            layer.do_polysemous_training = False


def set_search_params(index: faiss.Index, params: IndexParams) -> None:
    """nprobe for IVF indexes, efSearch for HNSW ones (read from the index, so `auto` choices get them too)."""
    space = faiss.ParameterSpace()
    if faiss.try_extract_index_ivf(index) is not None:
        space.set_index_parameter(index, "nprobe", params.nprobe)
    if "HNSW" in type(faiss.downcast_index(index)).__name__:
        space.set_index_parameter(index, "efSearch", params.ef_search)


def recall(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Mean recall@k of `index` against exact inner-product search over `vectors`, for these query vectors."""
    k = min(k, len(vectors))
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(truth, found)]))


def facts(built: faiss.Index, factory: str, seconds: float, doc_vectors, query_vectors, params: IndexParams) -> dict:
    """What the manifest says of an index: its factory, size and build time, and for an approximate index its
    recall@10 / @100 against exact search on a seeded sample of `params.recall_queries` queries."""
    found = {"factory": factory, "vectors": built.ntotal, "build_seconds": round(seconds, 1)}
    if params.recall_queries and not isinstance(faiss.downcast_index(built), faiss.IndexFlat):
        count = min(params.recall_queries, len(query_vectors))
        sample = query_vectors[np.sort(np.random.default_rng(params.seed).choice(len(query_vectors), count, False))]
        found["recall"] = {f"at_{k}": round(recall(built, doc_vectors, sample, k), 4) for k in (10, 100)}
        found["recall"]["queries"] = count
    return found


def write(index: faiss.Index, path: str) -> None:
    faiss.write_index(index, path)


def gpus() -> int:
    """GPUs FAISS can use in this process: 0 with faiss-cpu, or where none is visible."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def load(source: str | np.ndarray, params: IndexParams, gpu: bool = False) -> faiss.Index:
    """An index from its file, memory-mapped (the processes of one machine share a flat index's vectors in the page
    cache instead of each holding a copy), or from its bytes; on this process's GPUs if asked and FAISS has any."""
    if isinstance(source, np.ndarray):
        index = faiss.deserialize_index(source)
    else:
        index = faiss.read_index(source, faiss.IO_FLAG_MMAP_IFC)
    set_search_params(index, params)
    if gpu and gpus():
        index = faiss.index_cpu_to_all_gpus(index)
    return index


# FAISS's own floor for a centroid it can place (below it, k-means warns and topics hold a document or two).
MIN_DOCS_PER_TOPIC = 39


def topics(doc_vectors: np.ndarray, params: IndexParams) -> faiss.Kmeans:
    """Spherical k-means over the corpus (centroids on the unit sphere, like the vectors); a small corpus gets as
    many topics as it has documents for, and a warning saying so."""
    k = min(params.topics, max(1, len(doc_vectors) // MIN_DOCS_PER_TOPIC))
    if k < params.topics:
        log.warning(
            "index.topics is %d, but %d documents make only %d topic(s) of at least %d documents: using %d",
            params.topics, len(doc_vectors), k, MIN_DOCS_PER_TOPIC, k,
        )  # fmt: skip
    kmeans = faiss.Kmeans(
        doc_vectors.shape[1], k, niter=params.kmeans_iterations, seed=params.seed, spherical=True, verbose=False,
        gpu=gpus() > 0, min_points_per_centroid=1,  # the clamp above has warned already, FAISS need not repeat it
    )  # fmt: skip
    kmeans.train(doc_vectors)
    return kmeans


def assign(kmeans: faiss.Kmeans, ids: pa.Array, vectors: np.ndarray) -> pa.Table:
    distance, topic = kmeans.index.search(np.ascontiguousarray(vectors), 1)
    return pa.table(
        {"id": ids, "topic": topic[:, 0].astype(np.int32), "distance": distance[:, 0].astype(np.float32)},
        schema=schema.TOPICS,
    )
