"""The pairs stage for real: with no query style it passes the judged pairs on; with styles, queries written for
unlabelled documents by the packaged LLM behind a local OpenAI-compatible server (structured output asked for),
round-trip filtered, every one accounted for, and the kept ones flowing through every later stage as positives."""

from __future__ import annotations

import csv
import json
import shutil

import pyarrow.compute as pc
import pytest

from pairforge.pipeline import artifacts, params, query_writing, round_trip
from pairforge.pipeline.schema import InputError
from tests.conftest import STAGES, export_table, run_stage, set_params

KEY_ENV, KEY = "PAIRFORGE_TEST_QUERY_KEY", "sk-test-queries-never-written"


def test_without_query_styles_the_pairs_are_the_judged_ones(pipeline_run):
    ingested = artifacts.read(pipeline_run / "data/ingested/positives")
    pairs = artifacts.read(pipeline_run / "data/pairs/positives")
    assert pairs.select(["query_id", "doc_id", "score"]).equals(ingested)
    assert set(pairs["positive_kind"].to_pylist()) == {"judged"}
    assert artifacts.read(pipeline_run / "data/pairs/queries").equals(
        artifacts.read(pipeline_run / "data/ingested/queries")
    )
    assert artifacts.read(pipeline_run / "data/pairs/written").num_rows == 0


def test_query_params_are_checked():
    with pytest.raises(InputError, match="pairs.styles"):
        params.parse("pairs", {"styles": ["poem"]})
    with pytest.raises(InputError, match="pairs.prompt"):
        params.parse("pairs", {"styles": ["prompt"], "prompt": "Write a query."})
    custom = query_writing.query_task("prompt", 1, "Write a search for {document}, in German {not a field}.")
    assert custom.fields == ("document",)
    assert "{not a field}" in custom.render(document="x")[-1]["content"]
    assert query_writing.query_task("claim", 3).json_schema["properties"]["queries"]["type"] == "array"


@pytest.mark.slow
def test_generated_queries_are_round_tripped_accounted_for_and_flow_through_every_stage(pipeline_run, tmp_path,
                                                                                       monkeypatch):  # fmt: skip
    from pairforge.pipeline.models import llm as llms
    from tests.openai_server import OpenAIServer

    workdir = tmp_path / "project"
    shutil.copytree(pipeline_run, workdir)
    monkeypatch.setenv(KEY_ENV, KEY)
    local = llms.load("transformers", "packaged:SmolLM2-135M-Instruct", batch_size=4)
    styles, documents = ["question", "claim"], 4
    with OpenAIServer(local) as server:
        set_params(
            workdir,
            pairs={"styles": styles, "max_items": documents, "few_shot": 1, "llm_backend": "openai",
                   "llm_base_url": server.base_url, "llm_api_key_env": KEY_ENV, "llm_timeout_s": 120.0},
            generate={"llm_backend": "none"}, filter={"edit_max_nll_increase": None},  # no LM: not this test's subject
        )  # fmt: skip
        first = run_stage(workdir, "pairs")
    asked = [entry for entry in server.log if entry.get("response_format")]
    assert len(asked) >= documents * len(styles), "every (document, style) asked for, with the schema"
    written = artifacts.read(workdir / "data/pairs/written")
    # Every ask accounted for: one query each (queries_per_document 1), or one failed ask with its raw output.
    assert written.num_rows == documents * len(styles)
    assert len(set(zip(written["doc_id"].to_pylist(), written["style"].to_pylist()))) == written.num_rows
    judged_docs = set(artifacts.read(workdir / "data/ingested/positives")["doc_id"].to_pylist())
    assert not judged_docs & set(written["doc_id"].to_pylist()), "documents with judged queries are left out"
    kept = written.filter(pc.equal(written["decision"], "kept"))
    rejected = written.filter(pc.equal(written["decision"], "rejected"))
    assert kept.num_rows and rejected.num_rows, written.select(["text", "reason"]).to_pylist()
    config = params.load("pairs", workdir / "params.yaml")
    for row in kept.to_pylist():
        assert row["rank"] <= config.round_trip_top_k and row["near"] < config.ambiguous_docs
        assert row["copied_words"] <= config.max_copied_words
        assert row["copied_words"] < config.max_copied_share * len(round_trip.words(row["text"]))
    ledger = artifacts.read(workdir / "data/pairs/rejections")
    assert ledger.num_rows == rejected.num_rows and set(ledger["stage"].to_pylist()) == {"pairs"}
    assert ledger["reason"].to_pylist() == rejected["reason"].to_pylist()
    measured = [
        dict(s) for s, r in zip(ledger["scores"].to_pylist(), ledger["reason"].to_pylist()) if r != "unparseable_output"
    ]
    assert all("rank" in s and "copied_words" in s for s in measured)
    positives = artifacts.read(workdir / "data/pairs/positives")
    generated = positives.filter(pc.equal(positives["positive_kind"], "generated"))
    assert sorted(generated["query_id"].to_pylist()) == sorted(kept["query_id"].to_pylist())
    assert positives.num_rows == artifacts.read(workdir / "data/ingested/positives").num_rows + kept.num_rows
    assert {entry["authorization"] for entry in server.log} == {f"Bearer {KEY}"}
    assert "generated queries:" in first.stderr

    for name in STAGES[STAGES.index("embed") :]:
        run_stage(workdir, name)
    embedded = set(artifacts.read(workdir / "data/embeddings/queries")["id"].to_pylist())
    assert set(kept["query_id"].to_pylist()) <= embedded
    mined = set(artifacts.read(workdir / "data/mined/candidates")["query_id"].to_pylist())
    assert set(kept["query_id"].to_pylist()) <= mined, "generated queries are mined like judged ones"
    generated_pairs = set(zip(generated["query_id"].to_pylist(), generated["doc_id"].to_pylist()))
    for fmt in ("triplet", "n-tuple", "labeled-pair"):  # every row says which kind of pair it holds
        rows = export_table(workdir, fmt).to_pylist()
        pairs = {(r["query_id"], r.get("positive_id") or r["doc_id"]): r["positive_kind"] for r in rows
                 if r.get("label", 1) == 1}  # fmt: skip
        assert {kind for pair, kind in pairs.items() if pair in generated_pairs} <= {"generated"}, fmt
        assert {kind for pair, kind in pairs.items() if pair not in generated_pairs} == {"judged"}, fmt
    assert "generated" in {r["positive_kind"] for r in export_table(workdir, "triplet").to_pylist()}
    manifest = json.loads((workdir / "data/export/_manifest.json").read_text())
    assert manifest["pairs"]["generated"] == kept.num_rows
    card = (workdir / "data/export/README.md").read_text()
    assert "## Generated queries" in card and "SmolLM2-135M-Instruct" in card
    for path in workdir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in first.stdout + first.stderr

    # The blind-review tool reads this run: a sheet with no decision on it, and its labels reported per decision.
    from benchmarks import query_review

    sheet = tmp_path / "sheet.csv"
    assert query_review.sheet(workdir / "data", sheet, kept=2, rejected=2, seed=0) == min(2, kept.num_rows) + min(
        2, sum(1 for t in rejected["text"].to_pylist() if t is not None)
    )
    with open(sheet, newline="") as handle:
        labelled = list(csv.DictReader(handle))
    assert not {"decision", "reason", "rank", "score"} & set(labelled[0]), "blind: nothing says what was kept"
    for row in labelled:
        row.update(answered="y", real="n" if row["item"] == "1" else "y")
    with open(sheet, "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(labelled[0]))
        writer.writeheader()
        writer.writerows(labelled)
    found = query_review.report(workdir / "data", sheet)
    assert sum(group["labelled"] for name, group in found.items() if name in ("kept", "rejected")) == len(labelled)
    assert sum(group["good"] for name, group in found.items() if name in ("kept", "rejected")) == len(labelled) - 1
    query_review.public(sheet, tmp_path / "public.csv")
    assert "document" not in (tmp_path / "public.csv").read_text().splitlines()[0]


@pytest.mark.slow
def test_a_configured_cross_encoder_scores_every_generated_query_and_has_the_last_word(pipeline_run, cross_encoder_dir,
                                                                                       tmp_path):  # fmt: skip
    from pairforge.pipeline import embed, pairs
    from pairforge.pipeline.filtering import judges

    corpus = artifacts.read(pipeline_run / "data/ingested/corpus").slice(0, 3)
    doc_ids, texts = corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()
    # short, on topic: they pass the round trip (copies of the document's opening words: no share bound on copies)
    queries = [" ".join(text.split()[:6]) + "?" for text in texts]
    embedding = embed.as_embedded(params.load("embed", pipeline_run / "params.yaml"), pipeline_run / "data/embeddings")
    embedding = embedding.__class__(**{**embedding.__dict__, "cache": str(pipeline_run / "cache/embeddings")})
    judge = params.parse("filter", {"cross_encoder": str(cross_encoder_dir), "cache": str(tmp_path / "filter")})
    expected = judges.cross_encoder_scores(judge, queries, texts)
    for ce_min, reason in ((-1.0, None), (1.01, "judge_disagrees")):
        config = params.parse("pairs", {"styles": ["question"], "ce_min": ce_min, "round_trip_top_k": 50,
                                        "ambiguous_docs": 50, "max_copied_share": None})  # fmt: skip
        found = pairs.measure(config, embedding, judge, pipeline_run / "data/ingested", queries, doc_ids,
                              dict(zip(doc_ids, texts)), set())  # fmt: skip
        assert found["ce_score"] == pytest.approx(expected.tolist())
        assert found["reason"] == [reason] * 3


@pytest.mark.slow
def test_documents_are_written_for_and_judged_block_by_block_as_they_would_be_at_once(pipeline_run, tmp_path,
                                                                                      monkeypatch):  # fmt: skip
    """A large sample goes through in blocks of documents (memory holds one block); the blocks' rows are the rows
    of one pass, duplicates across blocks included."""
    from pairforge.pipeline import embed, pairs

    ingested = pipeline_run / "data/ingested"
    embedding = embed.as_embedded(params.load("embed", pipeline_run / "params.yaml"), pipeline_run / "data/embeddings")
    embedding = embedding.__class__(**{**embedding.__dict__, "cache": str(pipeline_run / "cache/embeddings")})
    config = params.parse("pairs", {"styles": ["keywords"], "max_items": 4, "llm_max_new_tokens": 24,
                                    "cache": str(tmp_path / "cache")})  # fmt: skip
    judged = pairs.judged(ingested)
    (whole,) = pairs.generate(config, embedding, ingested, judged, None)
    monkeypatch.setattr(pairs, "DOCUMENT_BLOCK", 3)
    blocks = list(pairs.generate(config, embedding, ingested, judged, None))
    assert [block.asked for block in blocks] == [0, 0], "the second pass finds every reply in the cache"

    def rows(tables):
        found = [row for table in tables for row in table.to_pylist()]
        return sorted(found, key=lambda r: (r["doc_id"], r.get("style", ""), r["query_id"] or ""))

    assert len(blocks) == 2 and rows(b.written for b in blocks) == rows([whole.written])
    assert rows(b.positives for b in blocks) == rows([whole.positives])
