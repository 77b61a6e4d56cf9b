"""FAISS indexes (any factory string, inner product) and k-means topics."""

from __future__ import annotations

import re

import faiss
import numpy as np
import pyarrow as pa

from pipeline import schema
from pipeline.params import IndexParams
from pipeline.schema import InputError


def _needs_points(factory: str) -> int:
    """Fewest training vectors a factory string can be trained on (FAISS itself fails less clearly)."""
    lists = [int(n) for n in re.findall(r"IVF(\d+)", factory)]
    return max(lists, default=0)


def build(vectors: np.ndarray, params: IndexParams) -> faiss.Index:
    dim = vectors.shape[1]
    try:
        index = faiss.index_factory(dim, params.factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as err:
        raise InputError("params.yaml", None, "index.factory", f"FAISS cannot build {params.factory!r}: {err}") from err
    if not index.is_trained:
        needed = _needs_points(params.factory)
        if len(vectors) < needed:
            raise InputError(
                "params.yaml",
                None,
                "index.factory",
                f"{params.factory!r} needs at least {needed} training vectors; the corpus has {len(vectors)}",
            )
        sample = vectors
        if params.train_size and len(vectors) > params.train_size:
            rows = np.random.default_rng(params.seed).choice(len(vectors), params.train_size, replace=False)
            sample = vectors[np.sort(rows)]
        index.train(sample)
    index.add(vectors)
    set_search_params(index, params)
    return index


def set_search_params(index: faiss.Index, params: IndexParams) -> None:
    """nprobe for IVF indexes, efSearch for HNSW; other indexes have nothing to set."""
    space = faiss.ParameterSpace()
    if "IVF" in params.factory:
        space.set_index_parameter(index, "nprobe", params.nprobe)
    if "HNSW" in params.factory:
        space.set_index_parameter(index, "efSearch", params.ef_search)


def write(index: faiss.Index, path: str) -> None:
    faiss.write_index(index, path)


def load(path: str, params: IndexParams) -> faiss.Index:
    index = faiss.read_index(path)
    set_search_params(index, params)
    return index


def topics(doc_vectors: np.ndarray, params: IndexParams) -> faiss.Kmeans:
    """Spherical k-means over the corpus (centroids on the unit sphere, like the vectors)."""
    k = min(params.topics, len(doc_vectors))
    kmeans = faiss.Kmeans(
        doc_vectors.shape[1], k, niter=params.kmeans_iterations, seed=params.seed, spherical=True, verbose=False
    )
    kmeans.train(doc_vectors)
    return kmeans


def assign(kmeans: faiss.Kmeans, ids: pa.Array, vectors: np.ndarray) -> pa.Table:
    distance, topic = kmeans.index.search(np.ascontiguousarray(vectors), 1)
    return pa.table(
        {"id": ids, "topic": topic[:, 0].astype(np.int32), "distance": distance[:, 0].astype(np.float32)},
        schema=schema.TOPICS,
    )
