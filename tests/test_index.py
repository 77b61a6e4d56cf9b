"""FAISS indexes from factory strings, and k-means topics."""

from __future__ import annotations

import shutil

import faiss
import numpy as np
import pytest
import yaml

from pairforge.pipeline import artifacts, card, index, sharded
from pairforge.pipeline.params import IndexParams
from pairforge.pipeline.schema import InputError
from tests.conftest import run_stage


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
    built, chosen = index.build(vectors, params)
    assert chosen == factory
    assert built.ntotal == len(vectors)
    assert built.metric_type == 0  # METRIC_INNER_PRODUCT
    assert recall_at_10(built, vectors) >= least_recall


@pytest.mark.parametrize("factory", ["PQ16", "IVF32,PQ16"])
def test_pq_codes_are_not_reordered_for_polysemous_search_that_nothing_runs(vectors, factory):
    built, _ = index.build(vectors, IndexParams(factory=factory, nprobe=32))
    layer = faiss.downcast_index(faiss.try_extract_index_ivf(built) or built)
    assert layer.do_polysemous_training is False  # FAISS's default is True: 28 s of training here, same results


def test_search_params_survive_a_write_and_load(vectors, tmp_path):
    """The index carries its nprobe / efSearch: whoever loads it searches as the index stage set it."""
    params = IndexParams(factory="IVF32,Flat", nprobe=32)
    index.write(index.build(vectors, params)[0], tmp_path / "index.faiss")
    loaded = index.load(str(tmp_path / "index.faiss"))
    assert index.search_setting(loaded) == ("nprobe", 32, 32) and recall_at_10(loaded, vectors) >= 0.99
    hnsw, _ = index.build(vectors, IndexParams(factory="HNSW16", ef_search=77))
    assert index.search_setting(faiss.deserialize_index(faiss.serialize_index(hnsw)))[:2] == ("efSearch", 77)


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


def test_topics_are_clamped_to_what_a_small_corpus_supports_with_a_warning(vectors, caplog):
    few = vectors[:100]
    with caplog.at_level("WARNING", logger="pairforge.index"):
        kmeans = index.topics(few, IndexParams(topics=16))
    assert kmeans.k == 2
    assert "index.topics is 16, but 100 documents make only 2 topic(s) of at least 39 documents" in caplog.text
    assert index.topics(vectors[:30], IndexParams(topics=16)).k == 1


@pytest.mark.parametrize(
    ("count", "budget_mb", "chosen"),
    [
        (50_000, 8192, "Flat"),
        (200_000, 8192, "HNSW32"),
        (1_000_000, 1024, "IVF4096,PQ96"),
        (20_000_000, 1024, "IVF16384,PQ24"),
    ],
)
def test_auto_picks_exact_then_hnsw_then_ivf_pq_within_the_memory_budget(count, budget_mb, chosen):
    params = IndexParams(factory="auto", exact_below=100_000, memory_budget_mb=budget_mb)
    assert index.auto_factory(count, 384, params) == chosen
    with pytest.raises(InputError, match="memory_budget_mb"):
        index.auto_factory(count * 100, 384, IndexParams(factory="auto", exact_below=0, memory_budget_mb=1))


def test_auto_builds_what_it_picked_and_recall_is_measured_against_exact_search(vectors):
    approximate, factory = index.build(vectors, IndexParams(factory="auto", exact_below=1000, memory_budget_mb=1))
    assert factory.startswith("IVF") and ",PQ" in factory and approximate.ntotal == len(vectors)
    exact, _ = index.build(vectors, IndexParams(factory="auto", exact_below=10_000))
    truth = exact.search(vectors[:100], 10)[1]
    assert sharded.recall(truth, truth, 10) == 1.0
    measured = sharded.recall(truth, approximate.search(vectors[:100], 10)[1], 10)
    assert 0.2 < measured < 1.0 and abs(measured - recall_at_10(approximate, vectors)) < 0.15


def test_index_stage_records_the_chosen_index_and_its_recall_in_the_manifest(pipeline_run, tmp_path):
    shutil.copytree(pipeline_run / "data" / "embeddings", tmp_path / "data" / "embeddings")
    params = yaml.safe_load((pipeline_run / "params.yaml").read_text())
    params["index"].update(factory="auto", exact_below=100, memory_budget_mb=1, recall_queries=40)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(tmp_path, "index")
    facts = artifacts.manifest(tmp_path / "data/index/doc_ids")["index"]
    assert facts["factory"] == "HNSW32" and facts["vectors"] == 400
    assert facts["recall"]["queries"] == 40 and 0.9 <= facts["recall"]["at_10"] <= 1.0 and not facts["exact"]
    on_the_card = f"searched at efSearch {facts['search']['value']}: recall@10 {facts['recall']['at_10']} against"
    assert on_the_card in card._index(facts), "the export's card says how near exact search its negatives came"
    exact = artifacts.manifest(pipeline_run / "data/index/doc_ids")["index"]
    assert exact["factory"] == "Flat" and "recall" not in exact, "exact search needs no recall check"
