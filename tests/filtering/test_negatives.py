"""Filter: near-duplicate rules, refill from the miner's order, and an audit that reconciles."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pairforge.pipeline import artifacts, ledger, schema
from pairforge.pipeline.filtering import negatives
from pairforge.pipeline.filtering.texts import jaccard, normal_form
from pairforge.pipeline.params import FilterParams

RULES_ONLY = FilterParams(duplicate_jaccard=0.6, duplicate_cosine=0.95, pair_closeness=None, refill_depth=5)


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


DOCS = {
    "pos": "Aspirin lowers the risk of heart attacks in adults.",
    "copy": "ASPIRIN lowers the risk of heart-attacks, in adults!",
    "overlap": "Aspirin lowers the risk of heart attacks in adults over fifty.",
    "twin": "A different text whose vector is nearly the positive's.",
    "a": "Statins reduce cholesterol.",
    "b": "Beta blockers slow the heart rate.",
    "c": "Vitamin C does not prevent colds.",
    "d": "Exercise improves sleep quality.",
}
VECTORS = {
    "pos": unit(1, 0, 0),
    "copy": unit(1, 0.05, 0),
    "overlap": unit(1, 0.2, 0),
    "twin": unit(1, 0.01, 0.01),
    "a": unit(0.6, 1, 0),
    "b": unit(0.5, 0, 1),
    "c": unit(0.4, 1, 1),
    "d": unit(0.3, 1, 0.5),
}


def candidates(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    """(query, doc, rank, "kept" or a reason code) rows as the mine stage writes them."""
    return pa.table(
        {
            "query_id": [r[0] for r in rows],
            "doc_id": [r[1] for r in rows],
            "rank": pa.array([r[2] for r in rows], pa.int32()),
            "score": pa.array([0.9 - 0.01 * r[2] for r in rows], pa.float32()),
            "pos_score": pa.array([0.95] * len(rows), pa.float32()),
            "decision": ["kept" if r[3] == "kept" else "rejected" for r in rows],
            "reason": [None if r[3] == "kept" else r[3] for r in rows],
        },
        schema=schema.CANDIDATES,
    )


def run(table, params=RULES_ONLY, judged_by=(), num_negatives=3):
    documents = negatives.Documents(DOCS, VECTORS)
    known = negatives.Positives.build([("q1", "pos")], documents)
    return negatives.run(table, known, documents, num_negatives, params, list(judged_by), ["q1"])


MINED = candidates(
    [
        ("q1", "copy", 0, "kept"),
        ("q1", "overlap", 1, "kept"),
        ("q1", "a", 2, "kept"),
        ("q1", "twin", 3, "above_relative_margin"),
        ("q1", "b", 4, "not_sampled"),
        ("q1", "c", 5, "not_sampled"),
        ("q1", "d", 6, "not_sampled"),
    ]
)


def test_near_duplicates_of_a_positive_are_rejected_with_the_test_that_caught_them():
    judged = run(MINED)
    by_doc = {
        d: (dec, reason, detail)
        for d, dec, reason, detail in zip(*(judged[c].to_pylist() for c in ("doc_id", "decision", "reason", "detail")))
    }
    assert by_doc["copy"] == ("rejected", "near_duplicate", "normalised text equals a positive")
    assert by_doc["overlap"][1:] == ("near_duplicate", "word-shingle Jaccard with a positive")
    assert by_doc["a"][0] == "kept"


def test_rejected_negatives_are_refilled_in_the_miners_order():
    judged = run(MINED)
    kept = judged.filter(pc.equal(judged["decision"], "kept"))
    assert kept["doc_id"].to_pylist() == ["a", "b", "c"], "refills come from not_sampled candidates, by rank"
    assert "twin" not in judged["doc_id"].to_pylist(), "candidates the miner rejected by rule are never refills"
    assert judged["round"].to_pylist() == [0, 0, 0, 1, 1]
    assert judged.num_rows == kept.num_rows + pc.sum(pc.equal(judged["decision"], "rejected")).as_py()


def test_a_candidate_as_close_to_the_query_and_positive_as_the_positive_is_rejected_like_positive():
    """Closeness to the pair, (cos(q, c) + cos(p, c)) / (1 + cos(q, p)), adapts to the query: the same candidate
    scores are like the positive for a loosely matched pair and unlike it for a paraphrase pair."""
    docs = {"pos": "Aspirin lowers heart attack risk.", "near": "Low-dose aspirin in heart disease.",
            "far": "Statins reduce cholesterol."}  # fmt: skip
    vectors = {"pos": unit(1, 0, 0), "near": unit(1, 1, 0), "far": unit(0.2, 1, 0)}  # cosine 0.71 and 0.20 to pos
    documents = negatives.Documents(docs, vectors)
    known = negatives.Positives.build([("q1", "pos"), ("q2", "pos")], documents)
    params = dataclasses.replace(RULES_ONLY, pair_closeness=0.7)

    def decide(query, pos_score, scores):
        batch = pa.table({"query_id": [query] * 2, "doc_id": ["near", "far"], "score": scores,
                          "pos_score": [pos_score] * 2})  # fmt: skip
        return negatives.near_duplicates(batch, known, documents, params)

    reasons, details, scores = decide("q1", 0.5, [0.45, 0.6])  # a claim and its abstract: cos(q, p) = 0.5
    assert reasons == ["like_positive", None], "(0.45 + 0.71) / 1.5 = 0.77; (0.6 + 0.2) / 1.5 = 0.53"
    assert scores[0]["closeness"] == pytest.approx((0.45 + 0.5**0.5) / 1.5, abs=1e-6)
    assert details[0] == "as close to the query and its positive as the positive is"
    assert decide("q2", 0.95, [0.45, 0.6])[0] == [None, None], "a paraphrase pair: (0.45 + 0.71) / 1.95 = 0.59"
    assert negatives.near_duplicates(pa.table({"query_id": ["q1"], "doc_id": ["near"], "score": [0.45],
                                               "pos_score": [0.5]}), known, documents,
                                     RULES_ONLY)[0] == [None], "null turns it off"  # fmt: skip


def test_the_query_itself_in_the_corpus_is_never_its_negative():
    """Paraphrase corpora hold the query's own sentence among the documents: whatever its scores, it is rejected
    (as mine_hard_negatives skips a candidate equal to the anchor), before any learned or cosine rule."""
    docs = {"pos": "Aspirin lowers heart attack risk.", "self": "does ASPIRIN help the heart?", "b": "Statins."}
    vectors = {"pos": unit(1, 0, 0), "self": unit(0, 1, 0), "b": unit(0, 0, 1)}
    documents = negatives.Documents(docs, vectors)
    known = negatives.Positives.build([("q1", "pos")], documents, {"q1": "Does aspirin help the heart"})
    batch = pa.table({"query_id": ["q1"] * 2, "doc_id": ["self", "b"], "score": [0.3] * 2, "pos_score": [0.5] * 2,
                      "likely": [0.0, 0.0]})  # fmt: skip
    reasons, details, _ = negatives.near_duplicates(batch, known, documents, RULES_ONLY)
    assert reasons == ["near_duplicate", None] and details[0] == "normalised text equals the query"


def test_a_candidate_the_learned_model_calls_likely_positive_is_rejected_with_its_chance():
    """The learned rule reads the chance `judge` worked out per candidate (the `likely` column); null turns it off."""
    documents = negatives.Documents(DOCS, VECTORS)
    known = negatives.Positives.build([("q1", "pos")], documents)
    batch = pa.table({"query_id": ["q1"] * 2, "doc_id": ["a", "b"], "score": [0.5] * 2, "pos_score": [0.5] * 2,
                      "likely": [0.4, 0.02]})  # fmt: skip
    params = dataclasses.replace(RULES_ONLY, likely_positive_above=0.1)
    reasons, details, scores = negatives.near_duplicates(batch, known, documents, params)
    assert reasons == ["likely_positive", None] and scores[0] == {"chance": 0.4}
    assert details[0] == "learned chance of being an unlabelled positive"
    off = dataclasses.replace(RULES_ONLY, likely_positive_above=None)
    assert negatives.near_duplicates(batch, known, documents, off)[0] == [None, None]


def test_without_refill_the_query_comes_up_short():
    judged = run(MINED, dataclasses.replace(RULES_ONLY, refill=False))
    assert judged.filter(pc.equal(judged["decision"], "kept"))["doc_id"].to_pylist() == ["a"]


def test_refill_reaches_past_any_number_of_rejections_within_the_window():
    """A query whose candidates are mostly copies of its positive (SICK and STS-B have such sentences) gets its
    negatives from deep in mine's window, in rounds; a bounded `refill_depth` leaves it short."""
    copies = [(f"copy{i}", "ASPIRIN lowers the risk of heart-attacks, in adults!") for i in range(30)]
    docs = DOCS | dict(copies)
    vectors = VECTORS | {doc: VECTORS["copy"] for doc, _ in copies}
    rows = [("q1", doc, rank, "kept" if rank < 3 else "not_sampled") for rank, (doc, _) in enumerate(copies)]
    table = candidates(rows + [("q1", doc, 30 + i, "not_sampled") for i, doc in enumerate("abcd")])
    documents = negatives.Documents(docs, vectors)
    known = negatives.Positives.build([("q1", "pos")], documents)

    def kept(depth):
        params = dataclasses.replace(RULES_ONLY, refill_depth=depth)
        judged = negatives.run(table, known, documents, 3, params, [], ["q1"])
        return judged.filter(pc.equal(judged["decision"], "kept"))["doc_id"].to_pylist(), judged

    found, judged = kept(20)
    assert found == [] and judged.num_rows == 23, "its 3 negatives and 20 refills, all copies"
    (short,) = negatives.short_queries(judged, schema.SHORT_QUERIES.empty_table(), 3).to_pylist()
    assert short == {"query_id": "q1", "negatives": 0, "depth": None, "reason": "refill_exhausted",
                     "detail": "filter near_duplicate: 23"}  # fmt: skip
    found, judged = kept(None)
    assert found == ["a", "b", "c"]
    assert judged.num_rows == 33 and "d" not in judged["doc_id"].to_pylist(), "nothing past the need is judged"
    assert negatives.short_queries(judged, schema.SHORT_QUERIES.empty_table(), 3).num_rows == 0


def test_embedding_cosine_catches_a_near_copy_in_other_words():
    table = candidates([("q1", "twin", 0, "kept"), ("q1", "a", 1, "kept")])
    judged = run(table, num_negatives=2)
    assert judged["reason"].to_pylist()[0] == "near_duplicate"
    assert judged["scores"].to_pylist()[0][0][0] == "cosine"


@pytest.mark.parametrize(
    ("positive", "same", "other"),
    [
        # Accents, case, punctuation and full-width forms do not make a text another text...
        ("Café crème: l'été à Paris.", "CAFE CREME -- L'ETE A PARIS", "Thé vert: l'hiver à Lyon."),
        ("Мама мыла раму.", "мама, мыла раму!", "Папа читал книгу."),
        ("我们今天去公园散步了。", "我们今天去公园散步了", "他们明天在家里看书。"),
        ("ＴＮＦ-α activates NF-κB.", "TNF α activates NF κB", "TNF-β activates NF-κB."),
    ],
)
def test_near_duplicate_rules_read_every_script(positive, same, other):
    """...but a text in another script is never empty after normalising, so it is not every positive's copy."""
    texts = {"pos": positive, "same": same, "other": other}
    vectors = {"pos": unit(1, 0, 0), "same": unit(0, 1, 0), "other": unit(0, 0, 1)}  # only the text rules decide
    documents = negatives.Documents(texts, vectors)
    known = negatives.Positives.build([("q1", "pos")], documents)
    batch = pa.table({"query_id": ["q1"] * 2, "doc_id": ["same", "other"], "score": [0.0] * 2, "pos_score": [0.5] * 2})
    reasons, details, _ = negatives.near_duplicates(batch, known, documents, RULES_ONLY)
    assert reasons == ["near_duplicate", None] and details[0] == "normalised text equals a positive"
    assert normal_form(other)[0] and normal_form(other)[0] != normal_form(positive)[0]


def test_unspaced_scripts_are_compared_character_by_character():
    first, second = "我们今天去公园散步了", "我们今天去公园散步吧"  # one character of ten differs
    assert normal_form(first)[0] == " ".join(first)
    assert 0.7 < jaccard(normal_form(first)[1], normal_form(second)[1]) < 1
    assert normal_form("東京はcapitalです")[0] == "東 京 は capital で す", "a Latin word in it stays whole"


def test_the_stage_writes_negatives_judged_and_a_ledger_that_reconciles(pipeline_run):
    judged = artifacts.read(pipeline_run / "data/filtered/judged")
    negatives = artifacts.read(pipeline_run / "data/filtered/negatives")
    rejections = artifacts.read(pipeline_run / "data/filtered/rejections")
    kept = pc.sum(pc.equal(judged["decision"], "kept")).as_py()
    assert judged.num_rows == kept + pc.sum(pc.equal(rejections["kind"], "negative")).as_py()
    assert negatives.num_rows == kept
    candidates = artifacts.read(pipeline_run / "data/mined/candidates")
    mine_rejections = artifacts.read(pipeline_run / "data/mined/rejections")
    assert candidates.num_rows == pc.sum(pc.equal(candidates["decision"], "kept")).as_py() + mine_rejections.num_rows
    counts, examples = ledger.summary(pipeline_run / "data")
    assert {"mine"} <= set(counts["stage"].to_list())
    assert (
        counts["rows"].sum()
        == mine_rejections.num_rows
        + rejections.num_rows
        + artifacts.read(pipeline_run / "data/ingested/rejections").num_rows
        + artifacts.read(pipeline_run / "data/generated/rejections").num_rows
    )
    printed = subprocess.run(
        [sys.executable, "-m", "pairforge.cli", "rejections"], cwd=pipeline_run, capture_output=True, text=True
    )
    assert printed.returncode == 0 and "known_positive" in printed.stdout
