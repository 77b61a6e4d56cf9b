"""Edits in the filter stage: every edit validated and the kept ones exported as counterfactuals; fluency under the
local LM and a real cross-encoder as the meaning judge, each deciding by its threshold."""

from __future__ import annotations

import re
import shutil
import unicodedata

import pyarrow.compute as pc
import pytest
import yaml

from pairforge.pipeline import artifacts, ledger
from tests.conftest import export_table, run_stage, set_params


def word_distance(first: str, second: str) -> int:
    """Levenshtein distance over words and punctuation marks, as the README defines an edit's size."""
    a, b = (re.findall(r"\w+|[^\w\s]", unicodedata.normalize("NFKC", text)) for text in (first, second))
    row = list(range(len(b) + 1))
    for i, token in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (token != other))
    return row[-1]


def cheap_verdict(original: str, edited: str, params: dict) -> tuple[str | None, int]:
    """What the README's cheap checks say of an edit, worked out here from their definitions, and its size."""
    distance = word_distance(original, edited)
    longest = max(1, *(len(re.findall(r"\w+|[^\w\s]", unicodedata.normalize("NFKC", t))) for t in (original, edited)))
    letters = [re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", t).casefold()) for t in (original, edited)]
    if original.split() == edited.split():
        return "edit_unchanged", distance
    if letters[0] == letters[1]:
        return "edit_trivial", distance
    if distance > params["edit_max_tokens"] or distance / longest > params["edit_max_ratio"]:
        return "edit_too_large", distance
    return None, distance


def test_filter_validates_every_edit_and_export_carries_the_kept_ones(pipeline_run):
    contrast = artifacts.read(pipeline_run / "data/generated/contrast")
    edits = artifacts.read(pipeline_run / "data/filtered/edits")
    assert edits["pair_id"].to_pylist() == contrast["pair_id"].to_pylist()
    rejected = edits.filter(pc.equal(edits["decision"], "rejected"))
    ledger_rows = artifacts.read(pipeline_run / "data/filtered/rejections")
    edit_rows = ledger_rows.filter(pc.equal(ledger_rows["kind"], "edit"))
    assert sorted(edit_rows["key"].to_pylist()) == sorted(rejected["pair_id"].to_pylist())
    params = yaml.safe_load((pipeline_run / "params.yaml").read_text())["filter"]
    for row in edits.to_pylist():
        expected, distance = cheap_verdict(row["original"], row["edited"], params)
        assert row["token_edits"] == distance, row
        if expected is not None:
            assert row["reason"] == expected, row
        else:
            assert row["reason"] not in ("edit_unchanged", "edit_trivial", "edit_too_large"), row
        if row["decision"] == "kept":  # the encoder judge measured every edit that passed the cheap checks
            low = params["edit_paraphrase_min"] if row["preserves_meaning"] else params["edit_drifted_below"]
            assert row["sameness"] >= low, row
            assert row["generator"] == "rules", "the encoder cannot read an LLM edit's meaning: none is kept"
        elif row["reason"] == "meaning_unjudged":
            assert row["generator"] != "rules" and row["sameness"] == row["sameness"], row
        elif row["reason"] in ("edit_drifted", "meaning_changed"):
            assert (
                row["sameness"]
                < params["edit_drifted_below" if row["reason"] == "edit_drifted" else "edit_paraphrase_min"]
            )
    kept = edits.filter(pc.and_(pc.equal(edits["decision"], "kept"), pc.invert(edits["preserves_meaning"])))
    assert kept.num_rows > 0
    triplets = export_table(pipeline_run, "contrast-triplet")
    assert set(triplets["negative_id"].to_pylist()) == set(kept["pair_id"].to_pylist())
    assert set(triplets["direction"].to_pylist()) == {"document->query"}, "this run edits queries"
    for fmt, kind in (("triplet", "negative_kind"), ("labeled-pair", "kind"), ("mixed", "negative_kind")):
        table = export_table(pipeline_run, fmt)  # edits of queries are anchored on a document: never in these
        assert pc.sum(pc.equal(table[kind], "counterfactual")).as_py() == 0, fmt
    assert "meaning_unjudged" in rejected["reason"].to_pylist(), "the run's LLM edits met the rule"
    counts, _ = ledger.summary(pipeline_run / "data")
    assert set(rejected["reason"].to_pylist()) <= set(counts["reason"].to_list())


@pytest.mark.slow
def test_fluency_and_cross_encoder_judge_decide_by_their_thresholds(pipeline_run, cross_encoder_dir, tmp_path):
    """Tailor-style fluency under the local LM, then a real cross-encoder as the meaning judge, through the stage."""
    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    limits = {"edit_max_nll_increase": 1.0, "edit_unchanged_above": 0.95, "edit_drifted_below": 0.2}
    # No refill: the cross-encoder also judges the negatives, and their later rounds are not this test's subject.
    judges = {"cross_encoder": str(cross_encoder_dir), "edit_judge": "cross_encoder", "refill": False}
    # A third of the edits (the LLM's from its cache): the local LM scores each edit's fluency, seconds apiece.
    rules = ["number_change", "negation_remove", "paraphrase_contraction", "paraphrase_number_format"]
    set_params(workdir, generate={"rules": rules}, filter={**judges, **limits})
    run_stage(workdir, "generate")
    run_stage(workdir, "filter")
    edits = artifacts.read(workdir / "data/filtered/edits").to_pylist()
    measured = [e for e in edits if e["reason"] not in ("edit_unchanged", "edit_trivial", "edit_too_large")]
    measured = [e for e in measured if e["reason"] != "edit_duplicate"]
    assert measured and all(e["nll_increase"] == e["nll_increase"] for e in measured)  # not NaN: every one scored
    assert {e["preserves_meaning"] for e in measured} == {True, False}, "both kinds of edit met their judge"
    for edit in measured:
        fluent = edit["nll_increase"] <= 1.0
        assert (edit["reason"] == "edit_not_fluent") == (not fluent), edit
        if not fluent:
            continue
        score = edit["sameness"]
        if edit["preserves_meaning"]:
            expected = "meaning_changed" if score < 0.9 else None
        else:
            expected = "meaning_unchanged" if score >= 0.95 else "edit_drifted" if score < 0.2 else None
        assert edit["reason"] == expected, edit


def test_an_edit_its_context_still_fits_is_rejected_as_still_supported(pipeline_run, tmp_path):
    """Anchored: with `edit_support_min_drop` 0, an edited query that the encoder scores at least as close to one
    of the query's positives as the original query is `edit_still_supported`; the drop is the encoder's, recomputed
    here, and the ledger keeps it."""
    from pairforge.pipeline.models.encoder import Encoder
    from tests.conftest import MODEL

    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    set_params(workdir, filter={"edit_support_min_drop": 0.0})
    run_stage(workdir, "filter")
    edits = artifacts.read(workdir / "data/filtered/edits").to_pylist()
    corpus = artifacts.read(workdir / "data/ingested/corpus")
    text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    positives = artifacts.read(workdir / "data/ingested/positives").to_pylist()
    checked = [e for e in edits if e["support_drop"] == e["support_drop"]]  # not NaN
    assert {e["reason"] for e in checked} == {None, "edit_still_supported"}, "both verdicts on real edits"
    encoder = Encoder(MODEL)
    for edit in checked:
        assert edit["source_kind"] == "query" and not edit["preserves_meaning"]
        docs = [text[p["doc_id"]] for p in positives if p["query_id"] == edit["source_id"]]
        vectors = encoder.encode([edit["original"], edit["edited"], *docs])[0]
        drop = float(min(vectors[2:] @ vectors[0] - vectors[2:] @ vectors[1]))
        assert drop == pytest.approx(edit["support_drop"], abs=1e-4)
        if abs(drop) > 1e-4:
            assert (edit["reason"] == "edit_still_supported") == (drop < 0), edit
    unchecked = [e for e in edits if e not in checked]
    assert all(e["reason"] != "edit_still_supported" for e in unchecked)
    ledger_rows = artifacts.read(workdir / "data/filtered/rejections").to_pylist()
    supported = [r for r in ledger_rows if r["reason"] == "edit_still_supported"]
    assert supported and all("support_drop" in dict(r["scores"]) for r in supported)
