"""`pairforge preview`: exported rows and rejected ones with their texts, read in a terminal; and every command
that reads a built project, pointed at something else, says what is missing in one line."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from pairforge import cli
from pairforge.pipeline import artifacts


def words(text: str) -> str:
    return " ".join(text.split())  # the preview wraps lines: compare the words


def preview(capsys, data, *options: str) -> str:
    cli.main(["preview", "--data", str(data), "--chars", "0", *options])
    return capsys.readouterr().out


def test_preview_prints_an_exported_splits_rows(pipeline_run, capsys):
    printed = preview(capsys, pipeline_run / "data", "--format", "n-tuple", "--split", "dev", "-n", "2")
    assert [line.split()[1:4] for line in printed.splitlines() if line.startswith("── ")] == [
        ["1", "of", "2"],
        ["2", "of", "2"],
    ]
    shown = words(printed)
    for row in artifacts.read(pipeline_run / "data/export/n-tuple/dev").slice(0, 2).to_pylist():
        for column in ("anchor", "positive", "negative_1", "negative_3", "query_id", "positive_id"):
            assert f"{column} {words(row[column])}" in shown, column


@pytest.mark.parametrize(
    ("folder", "kind", "texts"),
    [
        ("mined", "candidate", ("query", "document")),
        ("filtered", "negative", ("query", "document")),
        ("filtered", "edit", ("original", "edited")),
    ],
)
def test_preview_shows_the_texts_a_rejection_was_about(pipeline_run, capsys, folder, kind, texts):
    data = pipeline_run / "data"
    ledger = artifacts.read(data / folder / "rejections")
    first = ledger.filter(pc.equal(ledger["kind"], kind)).to_pylist()[0]
    stage = first["stage"]
    shown = words(preview(capsys, data, "--reason", first["reason"], "--stage", stage, "-n", "3"))
    rows = [r for r in ledger.to_pylist() if r["reason"] == first["reason"]][:3]
    queries = {q["query_id"]: q["text"] for q in artifacts.read(data / "ingested/queries").to_pylist()}
    docs = {d["doc_id"]: d["text"] for d in artifacts.read(data / "ingested/corpus").to_pylist()}
    edits = {e["pair_id"]: e for e in artifacts.read(data / "filtered/edits").to_pylist()}
    for row in rows:
        assert f"key {row['key']}" in shown and f"reason {row['reason']}" in shown
        if kind == "edit":
            found = {"original": edits[row["key"]]["original"], "edited": edits[row["key"]]["edited"]}
        else:
            query_id, doc_id = row["key"].split("/")  # SciFact's ids hold no slash
            found = {"query": queries[query_id], "document": docs[doc_id]}
        for name in texts:
            assert f"{name} {words(found[name])}" in shown, (name, row)


@pytest.mark.parametrize("command", [["report"], ["rejections"], ["review"], ["preview", "--format", "triplet"]])
def test_a_folder_that_is_not_a_built_project_is_one_line_and_status_1(tmp_path, capsys, command):
    for data, named in ((tmp_path / "nowhere", "no such folder"), (tmp_path, str(tmp_path))):
        with pytest.raises(SystemExit) as stopped:
            cli.main([*command, "--data", str(data)])
        assert stopped.value.code == 1
        said = capsys.readouterr().err
        assert said.count("\n") == 1 and said.startswith(f"pairforge {command[0]}: ") and named in said, said
