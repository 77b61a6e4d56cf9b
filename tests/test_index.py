"""FAISS indexes from factory strings, and k-means topics."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import index
from pipeline.params import IndexParams
from pipeline.schema import InputError


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """Clustered unit vectors, shaped like sentence embeddings (topics exist, neighbours are meaningful)."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 64))
    points = centres[rng.integers(0, 20, 3000)] + 0.6 * rng.normal(size=(3000, 64))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def recall_at_10(built, vectors: np.ndarray) -> float:
    queries = vectors[:200]
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    _, found = built.search(queries, 10)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found)]))


@pytest.mark.parametrize(
    ("factory", "least_recall"),
    [("Flat", 1.0), ("HNSW32", 0.95), ("IVF32,Flat", 0.99), ("IVF32,PQ16", 0.4)],
)
def test_factory_strings_build_inner_product_indexes(vectors, factory, least_recall):
    params = IndexParams(factory=factory, nprobe=32, ef_search=128)
    built = index.build(vectors, params)
    assert built.ntotal == len(vectors)
    assert built.metric_type == 0  # METRIC_INNER_PRODUCT
    assert recall_at_10(built, vectors) >= least_recall


def test_search_params_survive_a_write_and_load(vectors, tmp_path):
    params = IndexParams(factory="IVF32,Flat", nprobe=32)
    index.write(index.build(vectors, params), str(tmp_path / "index.faiss"))
    loaded = index.load(str(tmp_path / "index.faiss"), params)
    assert recall_at_10(loaded, vectors) >= 0.99


def test_training_needs_enough_vectors_and_says_so(vectors):
    with pytest.raises(InputError, match=r"index\.factory.*at least 4096 training vectors"):
        index.build(vectors, IndexParams(factory="IVF4096,Flat"))
    with pytest.raises(InputError, match=r"params\.yaml, field 'index\.factory'"):
        index.build(vectors, IndexParams(factory="NoSuchIndex"))


def test_topics_are_seeded_and_group_neighbours(vectors):
    params = IndexParams(topics=20, seed=3)
    ids = [str(i) for i in range(len(vectors))]
    first = index.assign(index.topics(vectors, params), ids, vectors)
    again = index.assign(index.topics(vectors, params), ids, vectors)
    assert first.equals(again)
    topics = first["topic"].to_numpy()
    assert len(set(topics)) == 20
    exact = np.argsort(-(vectors[:100] @ vectors.T), axis=1)[:, 1]
    assert np.mean(topics[:100] == topics[exact]) > 0.8, "nearest neighbours mostly share a topic"
