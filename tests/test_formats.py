"""Formats: kept contrast edits become contrast rows, each with its context (anchor, positive, query, topic)."""

from __future__ import annotations

import pyarrow as pa

from pipeline import formats
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
