"""Formats: kept contrast edits become contrast rows, each with its context (anchor, positive, query, topic)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from pairforge.pipeline import formats
from tests.contrast.test_validate import contrast_table


def test_contrast_frame_gives_each_edit_its_context():
    corpus = pa.table({"doc_id": ["d1", "d2"], "text": ["Doc one.", "Doc two."], "title": [None, None]})
    queries = pa.table({"query_id": ["q1", "q2"], "text": ["Aspirin reduces risk.", "Statins lower LDL."]})
    positives = pa.table({"query_id": ["q1", "q1", "q2"], "doc_id": ["d1", "d2", "d2"]})
    topics = pa.table({"id": ["q1", "q2"], "topic": pa.array([3, 4], pa.int32()), "distance": [0.1, 0.2]})
    edits = contrast_table(
        [
            ("query", "q1", "Aspirin reduces risk.", "Aspirin does not reduce risk.", "negation_insert", False),
            ("positive", "d2", "Doc two.", "Doc three.", "number_change", False),
            ("sentence", "s1", "A man plays.", "A man does not play.", "negation_insert", False),
            ("sentence", "s1", "A man plays.", "A guy plays.", "llm_paraphrase", True),
            ("sentence", "s2", "A dog runs.", "A dog does not run.", "negation_insert", False),  # no paraphrase
            ("query", "q2", "Statins lower LDL.", "Statins raise LDL.", "antonym_flip", False),
        ]
    )
    edits = edits.append_column("decision", pa.array(["kept"] * 5 + ["rejected"]))
    frame = formats.contrast_frame(edits, corpus, queries, positives, topics)
    rows = frame.select("anchor", "positive", "negative", "query_id", "topic", "op").rows()
    assert rows == [
        ("Doc one.", "Aspirin reduces risk.", "Aspirin does not reduce risk.", "q1", 3, "negation_insert"),
        ("Doc two.", "Aspirin reduces risk.", "Aspirin does not reduce risk.", "q1", 3, "negation_insert"),
        ("Aspirin reduces risk.", "Doc two.", "Doc three.", "q1", 3, "number_change"),
        ("Statins lower LDL.", "Doc two.", "Doc three.", "q2", 4, "number_change"),
        ("A man plays.", "A guy plays.", "A man does not play.", None, None, "negation_insert"),
    ]
    assert set(frame["negative_kind"]) == {"counterfactual"}
    directions = ["document->query", "document->query", "query->document", "query->document", "sentence->sentence"]
    assert frame["direction"].to_list() == directions
    mined = triplet_frame(None)
    for name in ("triplet", "labeled-pair"):  # one role per column: the anchor is a query (or the sentence edited)
        table = formats.FORMATS[name](mined, frame, 2).filter(
            pl.col("negative_kind" if name == "triplet" else "kind") == "counterfactual"
        )
        assert table["anchor"].to_list() == ["Aspirin reduces risk.", "Statins lower LDL.", "A man plays."], name


def triplet_frame(teacher: pa.Table | None):
    """Two queries, one positive each and two kept negatives, with the embedding model's similarities."""
    corpus = pa.table({"doc_id": ["p1", "p2", "n1", "n2", "n3"], "text": ["P1", "P2", "N1", "N2", "N3"]})
    queries = pa.table({"query_id": ["q1", "q2"], "text": ["Q1", "Q2"]})
    positives = pa.table(
        {"query_id": ["q1", "q2"], "doc_id": ["p1", "p2"], "score": pa.array([0.9, 0.8], pa.float32())}
    )
    negatives = pa.table(
        {
            "query_id": ["q1", "q1", "q2", "q2"],
            "doc_id": ["n1", "n2", "n3", "n1"],
            "rank": pa.array([2, 3, 2, 4], pa.int32()),
            "score": pa.array([0.7, 0.6, 0.5, 0.4], pa.float32()),
        }
    )
    topics = pa.table({"id": ["q1", "q2"], "topic": pa.array([0, 1], pa.int32())})
    return formats.triplet_frame(corpus, queries, positives, negatives, topics, teacher)


def test_n_tuple_scores_carry_the_teacher_where_there_is_one_else_the_embedding_similarity():
    teacher = pa.table(  # pairs in any order; (q2, n1) and (q1, n1) are different pairs
        {
            "query_id": ["q2", "q1", "q1", "q1", "q2", "q2"],
            "doc_id": ["n1", "p1", "n2", "n1", "p2", "n3"],
            "score": pa.array([0.01, 0.99, 0.2, 0.3, 0.95, 0.05], pa.float32()),
        }
    )
    distilled = formats.n_tuple_scores(triplet_frame(teacher), None, 2)
    plain = formats.n_tuple_scores(triplet_frame(None), None, 2)
    assert [[round(s, 2) for s in row] for row in distilled["score"].to_list()] == [
        [0.99, 0.3, 0.2],
        [0.95, 0.05, 0.01],
    ]
    assert [[round(s, 2) for s in row] for row in plain["score"].to_list()] == [[0.9, 0.7, 0.6], [0.8, 0.5, 0.4]]
    # Only `score` changes: the other columns, the embedding model's scores included, are the same.
    assert distilled.drop("score").equals(plain.drop("score"))
    assert distilled.columns == plain.columns
    assert formats.n_tuple(triplet_frame(teacher), None, 2).equals(formats.n_tuple(triplet_frame(None), None, 2))


def test_mixed_takes_the_pair_share_from_edits_of_its_positive_never_of_its_query():
    mined = triplet_frame(None)  # (q1, p1) and (q2, p2), two mined negatives each
    corpus = pa.table({"doc_id": ["p1", "p2"], "text": ["P1", "P2"], "title": [None, None]})
    queries = pa.table({"query_id": ["q1", "q2"], "text": ["Q1", "Q2"]})
    positives = pa.table({"query_id": ["q1", "q2"], "doc_id": ["p1", "p2"]})
    topics = pa.table({"id": ["q1", "q2"], "topic": pa.array([0, 1], pa.int32())})
    edits = contrast_table(
        [
            ("positive", "p1", "P1", "P1 edited", "negation_insert", False),
            ("positive", "p1", "P1", "P1 edited again", "number_change", False),
            ("query", "q2", "Q2", "Q2 edited", "negation_insert", False),
        ]
    ).append_column("decision", pa.array(["kept"] * 3))
    contrast = formats.contrast_frame(edits, corpus, queries, positives, topics)
    mixed = formats.mixed(mined, contrast, 2, counterfactual_share=0.5)
    rows = mixed.select("anchor", "positive", "negative", "negative_kind").rows()
    assert rows == [
        ("Q1", "P1", "P1 edited", "counterfactual"),  # one of two: the share; anchored on the query
        ("Q1", "P1", "N1", "mined"),
        ("Q2", "P2", "N3", "mined"),  # q2's edit reads the other way: contrast-triplet only
        ("Q2", "P2", "N1", "mined"),
    ]
