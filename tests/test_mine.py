"""Mining: the rules on hand-made candidates, and equality with sentence-transformers' mine_hard_negatives."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pairforge.pipeline import artifacts, index, mine, models, params, runtime

TOP = params.MineParams(range_min=0, range_max=6, num_negatives=2)


def decide(scores, positives=(), pos_score=0.9, **changes):
    config = dataclasses.replace(TOP, **changes)
    rows = np.arange(len(scores))
    return mine.decide_query("q1", rows, np.asarray(scores, np.float32), np.asarray(positives), pos_score, config)


def test_known_positives_are_never_mined_and_do_not_take_a_rank():
    rows, _, rank, kept, reasons, _ = decide([0.95, 0.9, 0.8, 0.7], positives=[0, 2])
    assert list(rows[kept]) == [1, 3]
    assert list(reasons[[0, 2]]) == ["known_positive", "known_positive"]
    assert list(rank) == [-1, 0, -1, 1]


def test_range_min_counts_retrieval_ranks_and_range_max_bounds_the_window():
    _, _, rank, kept, reasons, inspected = decide([0.9, 0.8, 0.7, 0.6, 0.5], range_min=2, range_max=4)
    assert list(np.flatnonzero(kept)) == [2, 3]
    assert list(reasons[:2]) == ["below_range_min", "below_range_min"]
    assert not inspected[4], "a candidate past range_max is not inspected"


def test_margins_and_score_bounds_reject_with_their_reason_code():
    scores = [0.89, 0.86, 0.8, 0.5, 0.1]
    _, _, _, kept, reasons, _ = decide(scores, pos_score=0.9, absolute_margin=0.05, min_score=0.2, num_negatives=5)
    assert list(reasons) == ["above_absolute_margin", "above_absolute_margin", None, None, "below_min_score"]
    _, _, _, kept, reasons, _ = decide(scores, pos_score=0.9, relative_margin=0.1, max_score=0.85, num_negatives=5)
    assert list(reasons[:3]) == ["above_relative_margin", "above_relative_margin", None]
    _, _, _, kept, reasons, _ = decide(scores, pos_score=2.0, max_score=0.85, num_negatives=5)
    assert list(reasons[:2]) == ["above_max_score", "above_max_score"]


def test_a_query_short_of_negatives_grows_its_window_up_to_range_limit():
    """Every candidate of the first window is above the margin: without range_limit the query gets nothing; with
    it the window doubles (6, 12) until two candidates pass, and no deeper."""
    scores = [0.89] * 8 + [0.5] * 12  # ranks 0-7 within 5% of the positive's 0.9, ranks 8-19 well below
    fixed = decide(scores, relative_margin=0.05)
    assert fixed[3].sum() == 0 and fixed[5].sum() == 6
    rows, _, rank, kept, reasons, inspected = decide(scores, relative_margin=0.05, range_limit=40)
    assert list(np.flatnonzero(kept)) == [8, 9] and inspected.sum() == 12, "the window grew to 12, not to 24"
    assert list(reasons[10:12]) == ["not_sampled", "not_sampled"] and not inspected[12:].any()
    capped = decide(scores, relative_margin=0.05, range_limit=9)
    assert list(np.flatnonzero(capped[3])) == [8] and capped[5].sum() == 9, "never past range_limit"
    with pytest.raises(Exception, match="range_limit"):
        params.parse("mine", {"range_max": 100, "range_limit": 50})


def test_random_sampling_is_seeded_per_query_and_returned_in_score_order():
    scores = np.linspace(0.9, 0.1, 6)
    first = decide(scores, sampling="random", seed=7)[3]
    again = decide(scores, sampling="random", seed=7)[3]
    other_seeds = {tuple(np.flatnonzero(decide(scores, sampling="random", seed=s)[3])) for s in range(20)}
    assert (first == again).all() and first.sum() == 2
    assert len(other_seeds) > 3, "the seed changes which candidates are drawn"
    rows, _, _, kept, reasons, _ = decide(scores, sampling="random", seed=7)
    assert sum(r == "not_sampled" for r in reasons) == 4


def test_every_inspected_candidate_is_recorded_and_counts_reconcile(pipeline_run):
    candidates = artifacts.read(pipeline_run / "data/mined/candidates")
    negatives = artifacts.read(pipeline_run / "data/mined/negatives")
    kept = pc.sum(pc.equal(candidates["decision"], "kept")).as_py()
    assert kept == negatives.num_rows
    rejected = candidates.filter(pc.equal(candidates["decision"], "rejected"))
    assert rejected["reason"].null_count == 0, "every rejection carries a reason code"
    positives = artifacts.read(pipeline_run / "data/ingested/positives")
    known = {(q, d) for q, d in zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist())}
    mined = set(zip(negatives["query_id"].to_pylist(), negatives["doc_id"].to_pylist()))
    assert not known & mined


def test_actors_without_the_index_file_mine_the_same_from_its_bytes(pipeline_run, monkeypatch):
    """A node that cannot see the driver's files gets the index's bytes instead of its path: same candidates."""
    monkeypatch.chdir(pipeline_run)
    config = params.load("mine")
    doc_ids = artifacts.read("data/index/doc_ids")["doc_id"].combine_chunks()
    queries, _ = mine.query_table(Path("data/ingested"), Path("data/embeddings"), doc_ids)
    mapped = mine.MineBatch(["data/index/index.faiss"], doc_ids, config)(queries)
    index_bytes = np.fromfile("data/index/index.faiss", dtype=np.uint8)
    assert mine.MineBatch([index_bytes], doc_ids, config)(queries).equals(mapped)
    assert mapped.equals(artifacts.read(pipeline_run / "data/mined/candidates")), "as the stage's actors found"
    on_gpu = dataclasses.replace(config, gpus_per_actor=1.0)  # with faiss-cpu: searched on the CPU, same rows
    assert index.gpus() == 0 and mine.MineBatch([index_bytes], doc_ids, on_gpu)(queries).equals(mapped)


def test_asking_for_gpus_on_a_cluster_without_any_fails_at_once():
    with pytest.raises(RuntimeError, match="this Ray cluster has no GPU"):
        next(runtime.map_batches(pa.table({"x": [1]}), mine.MineBatch, {}, runtime.Resources(gpus=1.0), 1))


def _pairforge_negatives(workdir, monkeypatch, config: params.MineParams) -> dict[str, list[str]]:
    """Run the mining actor body in-process on the pipeline's real index and query vectors."""
    monkeypatch.chdir(workdir)
    doc_ids = artifacts.read("data/index/doc_ids")["doc_id"].combine_chunks()
    queries, _ = mine.query_table(Path("data/ingested"), Path("data/embeddings"), doc_ids)
    shard = mine.MineBatch(["data/index/index.faiss"], doc_ids, config)
    negatives = mine.negatives(shard(queries), None)
    found: dict[str, list[str]] = {}
    for query_id, doc_id in zip(negatives["query_id"].to_pylist(), negatives["doc_id"].to_pylist()):
        found.setdefault(query_id, []).append(doc_id)
    return found


def _peer_negatives(workdir, config: params.MineParams, cache) -> dict[str, list[str]]:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    corpus = artifacts.read(workdir / "data/ingested/corpus")
    queries = artifacts.read(workdir / "data/ingested/queries")
    positives = artifacts.read(workdir / "data/ingested/positives")
    doc_text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
    dataset = Dataset.from_dict(
        {
            "anchor": [query_text[q] for q in positives["query_id"].to_pylist()],
            "positive": [doc_text[d] for d in positives["doc_id"].to_pylist()],
        }
    )
    model = SentenceTransformer(str(models.resolve("packaged:all-MiniLM-L6-v2")), device="cpu")
    peer = mine_hard_negatives(
        dataset,
        model,
        corpus=list(doc_text.values()),
        range_min=config.range_min,
        range_max=config.range_max,
        num_negatives=config.num_negatives,
        absolute_margin=config.absolute_margin,
        relative_margin=config.relative_margin,
        max_score=config.max_score,
        min_score=config.min_score,
        sampling_strategy="top",
        output_format="labeled-pair",
        use_faiss=True,
        cache_folder=str(cache),
        verbose=False,
    )
    id_of_doc = {text: doc_id for doc_id, text in doc_text.items()}
    id_of_query = {text: query_id for query_id, text in query_text.items()}
    found: dict[str, list[str]] = {}
    for anchor, document, label in zip(peer["anchor"], peer["positive"], peer["label"]):
        if label == 0:
            found.setdefault(id_of_query[anchor], []).append(id_of_doc[document])
    return found


PEER_CASES = {
    "top-k": {},
    "relative_margin": {"relative_margin": 0.05},
    "absolute_margin+max_score": {"absolute_margin": 0.02, "max_score": 0.75},
    "range_min": {"range_min": 3},
    "min_score": {"min_score": 0.3, "num_negatives": 5},
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(PEER_CASES))
def test_negatives_equal_sentence_transformers_mine_hard_negatives(pipeline_run, monkeypatch, peer_cache, case):
    config = params.MineParams(range_max=30, **{"num_negatives": 3, **PEER_CASES[case]})
    ours = _pairforge_negatives(pipeline_run, monkeypatch, config)
    peer = _peer_negatives(pipeline_run, config, peer_cache)
    assert sum(len(v) for v in ours.values()) > 0
    assert ours == peer
