"""Contrast edits without models: the minimality validator (on real SciFact claim pairs too), duplicates of one
source, and meaning verdicts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pairforge.pipeline import params, schema
from pairforge.pipeline.contrast import generate, validate
from tests.conftest import DATASETS, need

DEFAULTS = params.FilterParams()
MAX_TOKENS, MAX_RATIO = DEFAULTS.edit_max_tokens, DEFAULTS.edit_max_ratio


@pytest.mark.parametrize(
    ("original", "edited", "reason"),
    [
        ("Aspirin reduces stroke risk.", "Aspirin reduces stroke risk.", "edit_unchanged"),
        ("Aspirin reduces stroke risk.", "Aspirin  reduces stroke risk. ", "edit_unchanged"),
        ("Aspirin reduces stroke risk.", "aspirin reduces stroke-risk", "edit_trivial"),
        ("Aspirin reduces stroke risk.", "Aspirin does not reduce stroke risk.", None),
        ("Aspirin reduces stroke risk.", "Aspirin increases stroke risk.", None),
        ("Three patients had a fever.", "Six patients had a fever.", None),
        ("Aspirin reduces stroke risk.", "Statins are prescribed widely in Europe today.", "edit_too_large"),
        # 2 token edits out of 3 tokens: small in count but most of the text
        ("Aspirin works.", "Ibuprofen fails.", "edit_too_large"),
    ],
)
def test_minimality(original, edited, reason):
    assert validate.minimality(original, edited, MAX_TOKENS, MAX_RATIO)[0] == reason


def test_token_edits_count_whole_tokens():
    assert validate.token_edits("X inhibits Y.", "Y inhibits X.") == 2
    assert validate.token_edits("X inhibits Y.", "X does not inhibit Y.") == 3
    assert validate.token_edits("a b c", "a b c") == 0


def contrast_table(rows: list[tuple]) -> pa.Table:
    """(source_kind, source_id, original, edited, op, preserves_meaning) rows as a contrast artifact."""
    columns = list(zip(*rows))
    ids = [generate.pair_id(k, s, o, "test") for k, s, _, _, o, _ in rows]
    return pa.table(
        {
            "pair_id": ids,
            "source_kind": columns[0],
            "source_id": columns[1],
            "original": columns[2],
            "edited": columns[3],
            "op": columns[4],
            "generator": ["test"] * len(rows),
            "preserves_meaning": columns[5],
            "change": [None] * len(rows),
            "raw_output": [None] * len(rows),
        },
        schema=schema.CONTRAST,
    )


def test_check_marks_later_duplicates_of_the_same_source():
    table = contrast_table(
        [
            ("query", "q1", "X inhibits Y.", "X does not inhibit Y.", "negation_insert", False),
            ("query", "q1", "X inhibits Y.", "X  does not inhibit Y.", "llm_negate", False),
            ("query", "q2", "X inhibits Y.", "X does not inhibit Y.", "negation_insert", False),
            ("query", "q3", "X inhibits Y.", "X inhibits Y.", "llm_negate", False),
        ]
    )
    checked = validate.check(table, MAX_TOKENS, MAX_RATIO)
    assert checked["reason"].to_pylist() == [None, "edit_duplicate", None, "edit_unchanged"]
    assert checked["decision"].to_pylist() == ["kept", "rejected", "kept", "rejected"]
    assert checked["token_edits"].to_pylist() == [3, 3, 3, 0]


def test_meaning_verdicts_depend_on_what_the_edit_intends():
    preserves = np.array([False, False, False, True, True, False])
    sameness = np.array([0.995, 0.8, 0.2, 0.995, 0.7, np.nan])
    reasons = validate.meaning_reasons(preserves, sameness, 0.99, 0.5, 0.9)
    assert reasons == ["meaning_unchanged", None, "edit_drifted", None, "meaning_changed", None]
    assert validate.meaning_reasons(preserves[:3], sameness[:3], None, None, 0.9) == [None, None, None]


def scifact_claims() -> list[dict]:
    path = DATASETS / "scifact" / "raw" / "scifact_hf_csv.zip"
    need(path, "SciFact claims")
    from benchmarks.contrast_report import scifact_claim_pairs

    return scifact_claim_pairs(path)


def test_minimality_on_real_scifact_claim_pairs():
    """Claims citing the same abstract with opposite labels are mostly an original and its minimal rewrite; a
    claim against an unrelated claim is never a minimal edit."""
    pairs = scifact_claims()
    contrast = [p for p in pairs if p["kind"] == "support_vs_contradict"]
    unrelated = [p for p in pairs if p["kind"] == "unrelated"]
    assert len(contrast) > 50 and len(unrelated) > 50

    def accepted(group):
        return [validate.minimality(p["a"], p["b"], MAX_TOKENS, MAX_RATIO)[0] is None for p in group]

    # About a third of these pairs are full rewrites (token-edit ratio > 0.65), not minimal edits: those it
    # should reject. The minimal ones are accepted.
    assert np.mean(accepted(contrast)) > 0.6
    minimal = [p for p in contrast if validate.edit_ratio(p["a"], p["b"]) <= 0.3]
    assert np.mean(accepted(minimal)) > 0.95
    assert not any(accepted(unrelated))


@pytest.mark.parametrize(
    ("original", "edited", "changed"),
    [
        # a one-sentence text is its own window
        ("Aspirin lowers the risk of stroke.", "Aspirin raises the risk of stroke.", None),
        # in a document, the sentence the edit touched, whatever stands around it
        (
            "Background text here. Aspirin lowers the risk of stroke in S. cerevisiae, e.g. in yeast. More text.",
            "Background text here. Aspirin raises the risk of stroke in S. cerevisiae, e.g. in yeast. More text.",
            ("Aspirin lowers the risk of stroke in S. cerevisiae, e.g. in yeast.",
             "Aspirin raises the risk of stroke in S. cerevisiae, e.g. in yeast."),
        ),
        # an edit that joins two sentences: both, against the joined one
        ("First part. Second part. Rest.", "First part and second part. Rest.",
         ("First part. Second part.", "First part and second part.")),
    ],
)  # fmt: skip
def test_fluency_and_meaning_are_judged_on_the_sentences_an_edit_changed(original, edited, changed):
    assert validate.changed_sentences(original, edited) == (changed or (original, edited))
