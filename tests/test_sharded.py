"""The index built from Parquet in chunks, cut into shards, and searched as one index."""

from __future__ import annotations

import dataclasses
import shutil

import faiss
import numpy as np
import pyarrow as pa
import pytest
import yaml

from pairforge.pipeline import artifacts, index, schema, sharded
from pairforge.pipeline.params import IndexParams
from tests.conftest import run_stage


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3,000 clustered unit vectors written as an embeddings artifact of several Parquet parts."""
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(20, 64))
    points = centres[rng.integers(0, 20, 3000)] + 0.6 * rng.normal(size=(3000, 64))
    vectors = (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)
    folder = tmp_path_factory.mktemp("embeddings")
    with artifacts.ArtifactWriter(folder / "corpus", rows_per_part=1100) as out:
        table = pa.table({"id": [f"d{i}" for i in range(3000)], "vector": schema.vectors_column(vectors)})
        out.write("vectors", table)
    return folder / "corpus" / "vectors", vectors


def near(vectors: np.ndarray) -> np.ndarray:
    """Queries close to (not equal to) some documents, as a corpus's own queries are."""
    moved = vectors + 0.05 * np.random.default_rng(2).normal(size=vectors.shape)
    return (moved / np.linalg.norm(moved, axis=1, keepdims=True)).astype(np.float32)


def built(path, folder, params: IndexParams) -> list:
    count, dim = sharded.shape(path)
    template, _ = sharded.trained(path, count, dim, params)
    writer = sharded.ShardWriter(template, count, params, folder)
    for chunk in sharded.chunks(path):
        writer.add(schema.vectors_matrix(chunk["vector"]))
    writer.close()
    return [folder / name for name in writer.names]


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_a_sharded_index_ranks_exactly_as_one_index(corpus, tmp_path, monkeypatch, factory):
    """Chunks smaller than a part and shards that cut across chunks: every query's top 50, rows and scores, is the
    single index's; for IVF too, since every shard shares the one trained quantiser."""
    path, vectors = corpus
    monkeypatch.setattr(sharded, "CHUNK_ROWS", 400)
    (tmp_path / "one").mkdir(), (tmp_path / "many").mkdir()
    one = built(path, tmp_path / "one", IndexParams(factory=factory, nprobe=4))
    many = built(path, tmp_path / "many", IndexParams(factory=factory, nprobe=4, shard_rows=700))
    assert [f.name for f in one] == ["index.faiss"] and len(many) == 5
    assert sharded.files(tmp_path / "many") == many
    single, split = sharded.Searcher(one), sharded.Searcher(many)
    assert split.sizes == [700, 700, 700, 700, 200] and split.ntotal == 3000
    (scores, rows), (split_scores, split_rows) = single.search(vectors[:300], 50), split.search(vectors[:300], 50)
    np.testing.assert_array_equal(rows, split_rows)
    np.testing.assert_allclose(scores, split_scores, rtol=0, atol=1e-6)
    plain = faiss.read_index(str(one[0]))
    np.testing.assert_array_equal(np.sort(plain.search(vectors[:300], 50)[1], 1), np.sort(rows, 1))
    if factory == "Flat":
        np.testing.assert_array_equal(sharded.exact(path, vectors[:300], 50), rows)


def test_shards_built_by_ray_actors_are_the_shards_the_stage_builds(corpus, tmp_path, monkeypatch):
    """`index.build_actors`: two actors build the shards side by side (on a real Ray pool), byte for byte the
    shards one process builds, the last part-filled one included."""
    path, _ = corpus
    monkeypatch.setattr(sharded, "CHUNK_ROWS", 400)
    monkeypatch.setenv("PAIRFORGE_IN_PROCESS_ROWS", "0")
    (tmp_path / "one").mkdir(), (tmp_path / "pooled").mkdir()
    params = IndexParams(factory="IVF16,Flat", nprobe=4, shard_rows=700)
    alone = built(path, tmp_path / "one", params)
    count, dim = sharded.shape(path)
    template, _ = sharded.trained(path, count, dim, params)
    writer = sharded.PooledShardWriter(
        template, count, dataclasses.replace(params, build_actors=2), tmp_path / "pooled"
    )
    for chunk in sharded.chunks(path):
        writer.add(schema.vectors_matrix(chunk["vector"]))
    assert writer.close() == [700, 700, 700, 700, 200]
    assert [f.read_bytes() for f in sharded.files(tmp_path / "pooled")] == [f.read_bytes() for f in alone]


def test_the_search_setting_doubles_until_recall_reaches_its_target_and_is_written_with_the_shards(corpus, tmp_path):
    """`index.target_recall`: nprobe doubles from the built value while recall@10 on the sample is short of the
    target; every shard file is rewritten with the value kept, the one the manifest's recall was measured at."""
    path, vectors = corpus
    queries = near(vectors[:500])
    params = IndexParams(factory="IVF64,Flat", nprobe=1, shard_rows=1000, recall_queries=200, target_recall=0.95)
    files = built(path, tmp_path, params)
    facts = sharded.facts(files, params.factory, 0.0, path, queries, params)
    tuned = facts["search"]
    tried = {int(value): measured for value, measured in tuned["recall_at_10"].items()}
    assert tuned["setting"] == "nprobe" and tuned["first"] == 1 and len(tried) >= 2
    assert list(tried) == [2**i for i in range(len(tried))], "doubling from the built value"
    kept = tuned["value"]
    assert tried[kept] >= 0.95 and all(tried[v] < 0.95 for v in tried if v < kept) and max(tried) == kept
    assert facts["recall"]["at_10"] == tried[kept] and facts["recall"]["queries"] == 200
    assert [index.search_setting(faiss.read_index(str(f)))[1] for f in files] == [kept] * 3
    truth = sharded.exact(path, queries, 10)
    assert sharded.recall(truth, sharded.Searcher(files).search(queries, 10)[1], 10) >= 0.95


def test_a_target_recall_out_of_reach_stops_where_doubling_stops_paying_and_says_so(corpus, tmp_path, caplog):
    """PQ codes cap recall whatever the nprobe: the search stops raising it (and warns, naming the param); with the
    target off, the built value stays and its recall is still measured."""
    path, vectors = corpus
    queries = near(vectors[:500])
    params = IndexParams(factory="IVF64,PQ8", nprobe=2, recall_queries=200, target_recall=1.0)
    files = built(path, tmp_path, params)
    off = sharded.facts(files, params.factory, 0.0, path, queries, dataclasses.replace(params, target_recall=0))
    assert off["search"]["value"] == off["search"]["first"] == 2 and len(off["search"]["recall_at_10"]) == 1
    facts = sharded.facts(files, params.factory, 0.0, path, queries, params)
    tried = {int(value): measured for value, measured in facts["search"]["recall_at_10"].items()}
    assert facts["recall"]["at_10"] < 1.0 and "below index.target_recall 1.00" in caplog.text
    assert facts["search"]["value"] < max(tried) < 64, "stopped where a doubling gained too little"


def test_an_approximate_index_without_a_search_setting_has_its_recall_measured(corpus, tmp_path):
    path, vectors = corpus
    params = IndexParams(factory="PQ8", recall_queries=100)
    facts = sharded.facts(built(path, tmp_path, params), params.factory, 0.0, path, near(vectors[:200]), params)
    assert not facts["exact"] and "search" not in facts and 0 < facts["recall"]["at_10"] < 1


def test_quantisers_train_on_a_seeded_sample_read_from_the_parquet(corpus, monkeypatch):
    path, vectors = corpus
    monkeypatch.setattr(sharded, "CHUNK_ROWS", 256)
    rows = index.sample_rows(3000, 500, 7)
    np.testing.assert_array_equal(sharded.take(path, rows), vectors[rows])
    assert len(index.train_rows(3000, "IVF16,PQ8", IndexParams())) == 3000, "below FAISS's cap: all of them"
    assert len(index.train_rows(3000, "IVF16,PQ8", IndexParams(train_size=1000))) == 1000


def test_the_stage_with_shards_mines_what_it_mines_with_one_index(pipeline_run, tmp_path, monkeypatch):
    """The issue's test: sharded and single give the same candidates for Flat, through the real stages; and so do
    search actors that each hold one shard (`mine.shard_actors`), on a real Ray pool."""
    for folder in ("ingested", "pairs", "embeddings"):
        shutil.copytree(pipeline_run / "data" / folder, tmp_path / "data" / folder)
    params = yaml.safe_load((pipeline_run / "params.yaml").read_text())
    params["index"]["shard_rows"] = 150
    params["index"]["build_actors"] = 2  # the shards built side by side, as actors would
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(tmp_path, "index")
    run_stage(tmp_path, "mine")
    assert [f.name for f in sharded.files(tmp_path / "data/index")] == [f"index-{i:05d}.faiss" for i in range(3)]
    assert artifacts.manifest(tmp_path / "data/index/doc_ids")["index"]["shards"] == [150, 150, 100]
    for name in ("index/doc_ids", "index/doc_topics", "mined/candidates", "mined/negatives"):
        assert artifacts.read(tmp_path / "data" / name).equals(artifacts.read(pipeline_run / "data" / name)), name
    params["mine"]["shard_actors"] = 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("PAIRFORGE_IN_PROCESS_ROWS", "0")  # through Ray, where the search actors are
    log = run_stage(tmp_path, "mine").stderr
    assert "1 search actor(s) per shard, 3 shard(s)" in log and "x MineBatch (0 CPU" in log, log[-2000:]
    for name in ("mined/candidates", "mined/negatives"):
        assert artifacts.read(tmp_path / "data" / name).equals(artifacts.read(pipeline_run / "data" / name)), name
