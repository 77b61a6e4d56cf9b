"""The review loop on a real run: `pairforge review` writes a blind sheet of kept edits, a person labels it, and
`benchmarks/contrast_report.py --labels` reads it back per op; the fluency bound on real claim pairs."""

from __future__ import annotations

import csv
import json

import numpy as np
import polars as pl
import pytest

from benchmarks import contrast_report
from pairforge import cli
from pairforge.pipeline import artifacts, params
from pairforge.pipeline.models.llm import TransformersLLM
from tests.conftest import SCIFACT, need


def test_a_blind_sheet_labelled_by_hand_reads_back_per_op(pipeline_run, tmp_path, capsys):
    sheet = tmp_path / "review.csv"
    cli.main(["review", "--data", str(pipeline_run / "data"), "--per-op", "3", "--sheet", str(sheet)])
    with open(sheet, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["pair_id", "digest", "original", "edited", "valid", "why"], "no op, no score: blind"
    edits = pl.from_arrow(artifacts.read(pipeline_run / "data/filtered/edits"))
    kept = edits.filter(pl.col("decision") == "kept")
    op_of = dict(kept.select("pair_id", "op").iter_rows())
    per_op = {op: min(3, n) for op, n in kept.group_by("op").len().iter_rows()}
    assert sorted(op_of[r["pair_id"]] for r in rows) == sorted(op for op, n in per_op.items() for _ in range(n))
    assert all(r["valid"] == "" for r in rows) and {r["original"] for r in rows} <= set(kept["original"])
    # The reviewer's labels: every edit with a "not" in it judged invalid, the rest valid.
    for row in rows:
        row["valid"], row["why"] = ("n", "reviewer's note") if " not " in row["edited"] else ("y", "")
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "validity.json"
    contrast_report.main(["--labels", str(sheet), "--data", str(pipeline_run / "data"), "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["labelled"] == len(rows) and "overall:" in capsys.readouterr().out
    for op, figures in result["per_op"].items():
        mine = [r for r in rows if op_of[r["pair_id"]] == op]
        good = sum(r["valid"] == "y" for r in mine)
        assert (figures["labelled"], figures["valid"]) == (len(mine), good), op
        assert figures["interval"][0] <= figures["share"] <= figures["interval"][1]
        assert figures["kept"] == kept.filter(pl.col("op") == op).height
    assert result["stale"] == 0
    shares = {op: f["share"] for op, f in result["per_op"].items()}
    weights = {op: f["kept"] for op, f in result["per_op"].items()}
    expected = sum(shares[op] * weights[op] for op in shares) / sum(weights.values())
    assert result["weighted_share"] == pytest.approx(expected)
    # A label of an edit written differently since (same source and op, another text) no longer counts.
    rows[0]["digest"] = "0" * 12
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    contrast_report.main(["--labels", str(sheet), "--data", str(pipeline_run / "data"), "--json", str(out)])
    assert (json.loads(out.read_text())["stale"], json.loads(out.read_text())["labelled"]) == (1, len(rows) - 1)
    rows[0]["valid"] = "maybe"  # a label that is neither y nor n names the file, row and field
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=rf"{sheet.name}, row 2, field 'valid'"):
        contrast_report.main(["--labels", str(sheet), "--data", str(pipeline_run / "data")])


def test_the_fluency_bound_is_measured_on_real_minimal_claim_rewrites():
    need(SCIFACT, "SciFact")
    pairs = contrast_report.scifact_claim_pairs(SCIFACT / "raw/scifact_hf_csv.zip")
    config = params.parse("filter", {})
    lm = TransformersLLM(config.edit_lm, batch_size=16)
    few = [p for p in pairs if p["kind"] == "support_vs_contradict"][:12] + [
        p for p in pairs if p["kind"] == "unrelated"
    ][:4]
    found = contrast_report.fluency_bound(few, lm, config)
    minimal = [
        p
        for p in few
        if p["kind"] == "support_vs_contradict"
        and contrast_report.validate.minimality(p["a"], p["b"], config.edit_max_tokens, config.edit_max_ratio)[0]
        is None
    ]
    assert found["edits"] == 2 * len(minimal) > 0, "only the minimal rewrites, read both ways"
    by_hand = np.array(lm.mean_nll([p["b"] for p in minimal])) - np.array(lm.mean_nll([p["a"] for p in minimal]))
    assert np.allclose(found["increase"][: len(minimal)], by_hand, atol=1e-3)
    assert found["within_bound"] == pytest.approx(np.mean(np.array(found["increase"]) <= config.edit_max_nll_increase))
