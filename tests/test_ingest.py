"""Ingest: BEIR folders and pair files (JSONL, CSV/TSV, Parquet) read from real files, sampling, bad input named by
file / row / field, and the DVC stage leaving its previous artifact untouched when the input is bad."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pairforge.pipeline import artifacts, schema
from pairforge.pipeline.ingest import ingest
from pairforge.pipeline.params import IngestParams
from pairforge.pipeline.schema import InputError

REPO = Path(__file__).resolve().parents[1]

# A small, valid BEIR folder. d3 repeats d1's title and text (merged into d1), q5 repeats q1's text (merged into
# q1); ids 2 and 7 are JSON numbers; q3 is never judged and q4 only with score 0, so neither is kept.
CORPUS = [
    {"_id": "d1", "title": "Alpha", "text": "alpha text"},
    {"_id": 2, "title": "", "text": "beta text"},
    {"_id": "d3", "title": "Alpha", "text": "alpha text"},
    {"_id": "d4", "text": "gamma text"},
    {"_id": "d5", "title": "Delta", "text": "delta text"},
]
QUERIES = [
    {"_id": "q1", "text": "what is alpha"},
    {"_id": 7, "text": "what is beta"},
    {"_id": "q3", "text": "never judged"},
    {"_id": "q4", "text": "judged with zero only"},
    {"_id": "q5", "text": "what is alpha"},
]
QRELS = [("q1", "d1", "2"), ("7", "2", "1"), ("7", "d3", "1"), ("q4", "d4", "0"), ("q1", "d5", "0"), ("q5", "d5", "1")]


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    return path


def write_delimited(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


def make_beir(folder: Path, corpus=None, queries=None, qrels=None, split: str = "train") -> Path:
    write_jsonl(folder / "corpus.jsonl", CORPUS if corpus is None else corpus)
    write_jsonl(folder / "queries.jsonl", QUERIES if queries is None else queries)
    header = [["query-id", "corpus-id", "score"]]
    write_delimited(
        folder / "qrels" / f"{split}.tsv", header + [list(r) for r in (QRELS if qrels is None else qrels)], "\t"
    )
    return folder


def rows(table: pa.Table) -> list[tuple]:
    return list(zip(*table.to_pydict().values()))


# 1. Good BEIR input


def test_beir_graded_qrels_titles_duplicate_texts_and_numeric_ids(tmp_path):
    tables = ingest(IngestParams(source=str(make_beir(tmp_path / "beir"))))

    assert tables["corpus"].schema == schema.CORPUS
    assert rows(tables["corpus"]) == [
        ("d1", "Alpha. alpha text", "Alpha"),
        ("2", "beta text", None),  # numeric id -> string; empty title -> null
        ("d4", "gamma text", None),
        ("d5", "Delta. delta text", "Delta"),
    ]
    assert tables["queries"].schema == schema.QUERIES
    assert rows(tables["queries"]) == [("q1", "what is alpha"), ("7", "what is beta")]  # q3, q4: no positives
    assert tables["positives"].schema == schema.POSITIVES
    assert tables["positives"].schema.field("score").type == pa.float32()
    assert rows(tables["positives"]) == [
        ("q1", "d1", 2.0),
        ("7", "2", 1.0),
        ("7", "d1", 1.0),  # qrels named d3, merged into d1
        ("q1", "d5", 1.0),  # qrels named q5, merged into q1; (q1, d5, 0) is not a positive
    ]
    assert tables["rejections"].schema == schema.REJECTIONS
    assert [r[:5] for r in rows(tables["rejections"])] == [
        ("ingest", "doc", "d3", "duplicate_text", "same text as d1"),
        ("ingest", "query", "q5", "duplicate_text", "same text as q1"),
    ]


def test_title_separator_null_keeps_text_and_title_column(tmp_path):
    tables = ingest(IngestParams(source=str(make_beir(tmp_path / "beir")), title_separator=None))
    assert rows(tables["corpus"]) == [
        ("d1", "alpha text", "Alpha"),
        ("2", "beta text", None),
        ("d4", "gamma text", None),
        ("d5", "delta text", "Delta"),
    ]
    custom = ingest(IngestParams(source=str(tmp_path / "beir"), title_separator=" | "))
    assert custom["corpus"]["text"].to_pylist()[0] == "Alpha | alpha text"


def test_a_title_that_ends_a_clause_is_joined_without_doubled_punctuation(tmp_path):
    corpus = [
        {"_id": "d1", "title": "A study.", "text": "One."},
        {"_id": "d2", "title": "Why now?", "text": "Two."},
        {"_id": "d3", "title": "Plain", "text": "Three."},
    ]
    qrels = [("q1", "d1", "1"), ("q1", "d2", "1"), ("q1", "d3", "1")]
    folder = make_beir(tmp_path / "beir", corpus=corpus, qrels=qrels)
    joined = ingest(IngestParams(source=str(folder)))["corpus"]["text"].to_pylist()
    assert joined == ["A study. One.", "Why now? Two.", "Plain. Three."]
    lines = ingest(IngestParams(source=str(folder), title_separator="\n"))["corpus"]["text"].to_pylist()
    assert lines == ["A study.\nOne.", "Why now?\nTwo.", "Plain\nThree."]


def test_one_judgement_reached_twice_through_a_merge_is_one_positive_with_the_best_score(tmp_path):
    qrels = [("q1", "d3", "1"), ("q1", "d1", "2"), ("q1", "d1", "2"), ("7", "2", "1")]
    tables = ingest(IngestParams(source=str(make_beir(tmp_path / "beir", qrels=qrels))))
    assert rows(tables["positives"]) == [("q1", "d1", 2.0), ("7", "2", 1.0)]


# 2. Pair files in every format

PAIRS = [
    ["question", "answer", "distractor", "lang"],
    ["what is alpha?", "Alpha, the first letter", 'Omega, "the" last', "en"],
    ["what is beta?", "Beta is second", "Gamma é third", "en"],
    ["alpha again?", "Alpha, the first letter", "Beta is second", "en"],  # shares row 1's positive
]


def write_pairs(folder: Path, fmt: str, rows_: list[list[str]] = PAIRS) -> Path:
    header, body = rows_[0], rows_[1:]
    path = folder / f"pairs.{fmt}"
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(pa.table({name: [r[i] for r in body] for i, name in enumerate(header)}), path)
    elif fmt == "jsonl":
        write_jsonl(path, [dict(zip(header, r)) for r in body])
    else:
        write_delimited(path, rows_, "\t" if fmt == "tsv" else ",")
    return path


PAIR_PARAMS = {"format": "pairs", "anchor_column": "question", "positive_column": "answer"}


def test_pair_files_in_every_format_give_identical_tables(tmp_path):
    results = {
        fmt: ingest(IngestParams(source=str(write_pairs(tmp_path, fmt)), negative_column="distractor", **PAIR_PARAMS))
        for fmt in ("parquet", "jsonl", "csv", "tsv")
    }
    reference = results["parquet"]
    for fmt, tables in results.items():
        for name in ("corpus", "queries", "positives", "rejections"):
            assert tables[name].equals(reference[name]), f"{fmt}: {name} differs from the Parquet file's"

    assert reference["queries"]["text"].to_pylist() == ["what is alpha?", "what is beta?", "alpha again?"]
    docs = dict(zip(reference["corpus"]["text"].to_pylist(), reference["corpus"]["doc_id"].to_pylist()))
    assert sorted(docs) == sorted(["Alpha, the first letter", 'Omega, "the" last', "Beta is second", "Gamma é third"])
    positives = reference["positives"]
    alpha, beta = docs["Alpha, the first letter"], docs["Beta is second"]
    assert positives["doc_id"].to_pylist() == [alpha, beta, alpha]
    assert positives["score"].to_pylist() == [1.0, 1.0, 1.0]
    assert reference["rejections"].num_rows == 0

    no_negatives = ingest(IngestParams(source=str(tmp_path / "pairs.csv"), **PAIR_PARAMS))
    assert sorted(no_negatives["corpus"]["text"].to_pylist()) == ["Alpha, the first letter", "Beta is second"]


def test_csv_field_longer_than_the_csv_module_default_limit(tmp_path):
    long_text = "word " * 40_000  # 200 000 characters: over csv's default 131 072 field limit
    path = write_pairs(tmp_path, "csv", [["anchor", "positive"], ["q", long_text]])
    tables = ingest(IngestParams(source=str(path), format="pairs"))
    assert tables["corpus"]["text"].to_pylist() == [long_text]


# 3. max_queries sampling


def test_max_queries_keeps_exactly_that_many_queries_and_only_their_positives(tmp_path):
    corpus = [{"_id": f"d{i}", "text": f"document {i}"} for i in range(30)]
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(30)]
    qrels = [(f"q{i}", f"d{(i + k) % 30}", "1") for i in range(30) for k in (0, 1)]
    source = str(make_beir(tmp_path / "beir", corpus, queries, qrels))

    first = ingest(IngestParams(source=source, max_queries=7, seed=3))
    again = ingest(IngestParams(source=source, max_queries=7, seed=3))
    other = ingest(IngestParams(source=source, max_queries=7, seed=4))

    kept = first["queries"]["query_id"].to_pylist()
    assert len(kept) == 7
    assert kept == sorted(kept, key=lambda q: int(q[1:])), "kept queries stay in file order"
    assert first["positives"].num_rows == 14
    assert set(first["positives"]["query_id"].to_pylist()) == set(kept)
    assert first["corpus"].num_rows == 30, "the corpus is not sampled"
    for name in first:
        assert first[name].equals(again[name])
    assert set(other["queries"]["query_id"].to_pylist()) != set(kept)
    assert ingest(IngestParams(source=source, max_queries=100))["queries"].num_rows == 30


# 4. Bad input: the error names the file, the (physical) row and the field


def _beir(tmp_path: Path, **changes) -> IngestParams:
    return IngestParams(source=str(make_beir(tmp_path / "beir", **changes)))


def _raw(tmp_path: Path, relpath: str, data: bytes, **changes) -> IngestParams:
    config = _beir(tmp_path, **changes)
    (tmp_path / "beir" / relpath).write_bytes(data)
    return config


def _pairs(tmp_path: Path, fmt: str, rows_=None, **changes) -> IngestParams:
    path = write_pairs(tmp_path, fmt, rows_ or [["anchor", "positive"], ["a1", "p1"], ["a2", "p2"]])
    return IngestParams(source=str(path), format="pairs", **changes)


def _pairs_raw(tmp_path: Path, name: str, data: bytes) -> IngestParams:
    (tmp_path / name).write_bytes(data)
    return IngestParams(source=str(tmp_path / name), format="pairs")


def _retyped_parquet(path: Path, column: str) -> IngestParams:
    """The file with `column`'s bytes declared a string column (what a broken writer produces), unvalidated."""
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    as_string = pa.StringArray.from_buffers(len(table), *table[column].combine_chunks().buffers()[1:])
    pq.write_table(table.set_column(index, column, as_string), path)
    return IngestParams(source=str(path), format="pairs")


def _truncated_parquet(tmp_path: Path) -> IngestParams:
    config = _pairs(tmp_path, "parquet")
    data = Path(config.source).read_bytes()
    Path(config.source).write_bytes(data[: len(data) // 2])
    return config


OK = CORPUS[0]
BAD_INPUT = {
    "missing field": (lambda t: _beir(t, corpus=[OK, {"_id": "d2", "title": "t"}]), "corpus.jsonl", 2, "text"),
    "missing id": (lambda t: _beir(t, queries=[{"text": "what"}]), "queries.jsonl", 1, "_id"),
    "text is a list": (lambda t: _beir(t, corpus=[OK, {"_id": "d2", "text": ["a"]}]), "corpus.jsonl", 2, "text"),
    "text is a dict": (
        lambda t: _beir(t, queries=[QUERIES[0], {"_id": "q2", "text": {"en": "x"}}]),
        "queries.jsonl",
        2,
        "text",
    ),
    "id is a float": (lambda t: _beir(t, corpus=[OK, {"_id": 1.5, "text": "x"}]), "corpus.jsonl", 2, "_id"),
    "title is a list": (lambda t: _beir(t, corpus=[{**OK, "title": ["A"]}]), "corpus.jsonl", 1, "title"),
    "empty text": (lambda t: _beir(t, corpus=[OK, {"_id": "d2", "text": "  "}]), "corpus.jsonl", 2, "text"),
    "duplicate id, other text": (
        lambda t: _beir(t, corpus=[OK, CORPUS[1], {"_id": "d1", "text": "other"}]),
        "corpus.jsonl",
        3,
        "_id",
    ),
    "qrels unknown query": (lambda t: _beir(t, qrels=[QRELS[0], ("nope", "d1", "1")]), "train.tsv", 3, "query-id"),
    "qrels unknown doc": (lambda t: _beir(t, qrels=[QRELS[0], ("q1", "nope", "1")]), "train.tsv", 3, "corpus-id"),
    "qrels score not a number": (lambda t: _beir(t, qrels=[("q1", "d1", "high")]), "train.tsv", 2, "score"),
    "qrels wrong field count": (
        lambda t: _raw(t, "qrels/train.tsv", b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n"),
        "train.tsv",
        3,
        None,
    ),
    "malformed JSON (physical line)": (
        lambda t: _raw(
            t, "corpus.jsonl", b'{"_id": "a", "text": "x"}\n\n{"_id": "b", "text": "y"}\n{"_id": "c", "te\n'
        ),
        "corpus.jsonl",
        4,
        None,
    ),
    "JSON line not an object": (
        lambda t: _raw(t, "queries.jsonl", b'{"_id": "q1", "text": "x"}\n["q2", "y"]\n'),
        "queries.jsonl",
        2,
        None,
    ),
    "invalid UTF-8": (
        lambda t: _raw(
            t,
            "corpus.jsonl",
            b'{"_id": "d1", "text": "a"}\n{"_id": "d2", "text": "b"}\n{"_id": "d3", "text": "caf\xe9"}\n',
        ),
        "corpus.jsonl",
        3,
        None,
    ),
    "empty file": (lambda t: _raw(t, "queries.jsonl", b""), "queries.jsonl", None, None),
    "blank lines only": (lambda t: _raw(t, "corpus.jsonl", b"\n  \n\n"), "corpus.jsonl", None, None),
    "missing qrels split": (
        lambda t: IngestParams(source=str(make_beir(t / "beir")), split="dev"),
        "dev.jsonl",
        None,
        None,
    ),
    "unknown format": (lambda t: _pairs_raw(t, "corpus.xml", b"<corpus/>\n"), "corpus.xml", None, None),
    "pair file not found": (
        lambda t: IngestParams(source=str(t / "none.jsonl"), format="pairs"),
        "none.jsonl",
        None,
        None,
    ),
    "CSV wrong field count": (
        lambda t: _pairs_raw(t, "pairs.csv", b"anchor,positive\na,b\nc,d,e\n"),
        "pairs.csv",
        3,
        None,
    ),
    "CSV header only": (lambda t: _pairs_raw(t, "pairs.csv", b"anchor,positive\n"), "pairs.csv", None, None),
    "CSV mapped column absent": (lambda t: _pairs(t, "csv", anchor_column="question"), "pairs.csv", 2, "question"),
    "TSV negative empty": (
        lambda t: _pairs(
            t,
            "tsv",
            [["a", "p", "n"], ["x", "y", "z"], ["x2", "y2", ""]],
            anchor_column="a",
            positive_column="p",
            negative_column="n",
        ),
        "pairs.tsv",
        3,
        "n",
    ),
    "Parquet truncated": (_truncated_parquet, "pairs.parquet", None, None),
    "Parquet no rows": (lambda t: _pairs(t, "parquet", [["anchor", "positive"]]), "pairs.parquet", None, None),
    "Parquet null value": (
        lambda t: (
            pq.write_table(pa.table({"anchor": ["a", "b"], "positive": ["p", None]}), t / "p.parquet"),
            IngestParams(source=str(t / "p.parquet"), format="pairs"),
        )[1],
        "p.parquet",
        2,
        "positive",
    ),
    # Each of these ended in a raw traceback:
    "5,000-digit integer id": (
        lambda t: _raw(t, "corpus.jsonl", b'{"_id": "d1", "text": "a"}\n{"_id": ' + b"7" * 5000 + b', "text": "b"}\n'),
        "corpus.jsonl",
        2,
        None,
    ),
    "JSON nested too deeply": (
        lambda t: _raw(
            t, "queries.jsonl", b'{"_id": "q1", "text": "x"}\n{"_id": "q2", "text": ' + b"[" * 100_000 + b"\n"
        ),
        "queries.jsonl",
        2,
        None,
    ),
    "qrels score overflows": (lambda t: _beir(t, qrels=[("q1", "d1", "1" + "0" * 400)]), "train.tsv", 2, "score"),
    "qrels score beyond float32": (lambda t: _beir(t, qrels=[("q1", "d1", "1e300")]), "train.tsv", 2, "score"),
    "Parquet invalid UTF-8": (
        lambda t: (
            pq.write_table(
                pa.table({"anchor": pa.array(["a", "b", "c"]), "positive": pa.array([b"p", b"q", b"caf\xe9"])}),
                t / "bytes.parquet",
            ),
            _retyped_parquet(t / "bytes.parquet", "positive"),
        )[1],
        "bytes.parquet",
        3,
        "positive",
    ),
    "CSV unbalanced quote": (
        lambda t: _pairs_raw(t, "pairs.csv", b'anchor,positive\na,b\n"c,d\ne,f\ng,h\n'),
        "pairs.csv",
        3,
        None,
    ),
}
PROBLEMS = {
    "missing field": "missing field",
    "missing id": "missing field",
    "text is a list": "expected a string, found list",
    "text is a dict": "expected a string, found dict",
    "id is a float": "expected a string, found float",
    "title is a list": "expected a string, found list",
    "empty text": "text is empty",
    "duplicate id, other text": "duplicate id 'd1' with a different text",
    "qrels unknown query": "unknown query 'nope'",
    "qrels unknown doc": "unknown document 'nope'",
    "qrels score not a number": "expected a finite number",
    "qrels wrong field count": "expected 3 fields",
    "malformed JSON (physical line)": "malformed JSON",
    "JSON line not an object": "expected a JSON object",
    "invalid UTF-8": "not valid UTF-8",
    "empty file": "file is empty",
    "blank lines only": "holds no records",
    "missing qrels split": "file not found",
    "unknown format": "unknown format '.xml'",
    "pair file not found": "file not found",
    "CSV wrong field count": "expected 2 fields",
    "CSV header only": "holds no records",
    "CSV mapped column absent": "missing field",
    "TSV negative empty": "text is empty",
    "Parquet truncated": "not a readable Parquet file",
    "Parquet no rows": "holds no records",
    "Parquet null value": "missing field",
    "5,000-digit integer id": "malformed JSON",
    "JSON nested too deeply": "malformed JSON: nested too deeply",
    "qrels score overflows": "expected a finite number",
    "qrels score beyond float32": "expected a finite number",
    "Parquet invalid UTF-8": "not valid UTF-8",
    "CSV unbalanced quote": "a quoted field opened here is never closed",
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_names_file_row_and_field(tmp_path, case):
    setup, name, row, field = BAD_INPUT[case]
    config = setup(tmp_path)
    with pytest.raises(InputError) as caught:
        ingest(config)
    err = caught.value
    assert Path(err.source).name == name
    assert (err.row, err.field) == (row, field)
    assert PROBLEMS[case] in err.problem
    message = str(err)
    assert message.startswith(err.source)
    assert (f", row {row}" in message) == (row is not None)
    assert (f", field {field!r}" in message) == (field is not None)


# 5. The real DVC stage


def _run_stage(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "pairforge.ingest"]
    return subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=120)


def _write_params(project: Path, source: Path) -> None:
    section = {"source": str(source), "format": "beir", "split": "train", "title_separator": ". ", "max_queries": 0}
    (project / "params.yaml").write_text(yaml.safe_dump({"ingest": section}))


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_stage_writes_the_artifact_and_leaves_it_untouched_on_bad_input(tmp_path):
    good = make_beir(tmp_path / "good")
    bad = make_beir(tmp_path / "bad", corpus=[OK, {"_id": "d2", "title": "no text"}])
    project = tmp_path / "project"
    project.mkdir()
    ingested = project / "data" / "ingested"

    _write_params(project, good)
    done = _run_stage(project)
    assert done.returncode == 0, done.stderr
    expected = ingest(IngestParams(source=str(good)))
    for name, table in expected.items():
        assert (ingested / name / "part-00000.parquet").is_file()
        assert artifacts.manifest(ingested / name)["rows"] == table.num_rows
        assert artifacts.read(ingested / name).equals(table)
    before = _snapshot(ingested)
    manifests = {name: (ingested / name / "_manifest.json").read_text() for name in expected}

    _write_params(project, bad)
    failed = _run_stage(project)
    assert failed.returncode == 1
    last = failed.stderr.strip().splitlines()[-1]
    assert (
        last
        == f"pairforge ingest: {bad / 'corpus.jsonl'}, row 2, field 'text': missing field (the row has '_id', 'title')"
    )
    assert _snapshot(ingested) == before
    assert {name: (ingested / name / "_manifest.json").read_text() for name in expected} == manifests
    left = sorted(p.name for p in (project / "data").iterdir())
    assert left == [".ingested.lock", "ingested"], "no .ingested.tmp-* / .old left (the writer's lock file stays)"


# Bring your own data: errors that say what was found and which param to set


def test_a_pair_file_with_other_column_names_lists_them_and_names_the_param(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"question": "what is alpha?", "context": "Alpha is first."}])
    with pytest.raises(InputError) as caught:
        ingest(IngestParams(source=str(path), format="pairs"))
    assert str(caught.value) == (
        f"{path}, row 1, field 'anchor': missing field (the row has 'question', 'context'); "
        "set ingest.anchor_column to the column that holds it"
    )
    tables = ingest(IngestParams(source=str(path), format="pairs", anchor_column="question", positive_column="context"))
    assert tables["queries"]["text"].to_pylist() == ["what is alpha?"]


def test_a_layout_that_does_not_match_the_format_says_which_format_it_is(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": "a", "positive": "b"}])
    with pytest.raises(InputError, match=r"is a file, and format beir reads a folder .* set ingest.format: pairs"):
        ingest(IngestParams(source=str(pairs)))
    folder = make_beir(tmp_path / "beir")
    with pytest.raises(InputError, match="is a BEIR folder .*: set ingest.format: beir"):
        ingest(IngestParams(source=str(folder), format="pairs"))
    (folder / "queries.jsonl").rename(folder / "topics.jsonl")
    with pytest.raises(InputError, match=r"looks for queries\.\* .* which holds corpus.jsonl, qrels/, topics.jsonl"):
        ingest(IngestParams(source=str(folder)))


def test_pairs_with_an_unlabelled_corpus_mine_from_both(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"anchor": "what is alpha?", "positive": "Alpha is first."}])
    extra = write_delimited(tmp_path / "docs.csv", [["body"], ["Beta is second."], ["Alpha is first."], ["Gamma."]])
    params = IngestParams(source=str(pairs), format="pairs", corpus=str(extra), corpus_column="body")
    tables = ingest(params)
    assert tables["corpus"]["text"].to_pylist() == ["Alpha is first.", "Beta is second.", "Gamma."]
    assert rows(tables["positives"]) == [
        (tables["queries"]["query_id"][0].as_py(), tables["corpus"]["doc_id"][0].as_py(), 1.0)
    ]
    assert tables["rejections"].num_rows == 0, "a document that is also a positive is that positive, once"
    with pytest.raises(InputError, match="set ingest.corpus_column"):
        ingest(IngestParams(source=str(pairs), format="pairs", corpus=str(extra)))


def test_documents_alone_are_a_source_for_generated_queries(tmp_path):
    """`format: corpus` (a documents file) and a BEIR folder with `split: null`: a corpus, no query, no pair."""
    docs = write_delimited(
        tmp_path / "docs.csv", [["body"], ["Beta is second."], ["Alpha is first."], ["Beta is second."]]
    )
    tables = ingest(IngestParams(source=str(docs), format="corpus", corpus_column="body"))
    assert tables["corpus"]["text"].to_pylist() == ["Beta is second.", "Alpha is first."]
    assert tables["queries"].num_rows == tables["positives"].num_rows == 0
    beir = ingest(IngestParams(source=str(make_beir(tmp_path / "beir")), split=None))
    assert beir["corpus"].num_rows == 4 and beir["queries"].num_rows == beir["positives"].num_rows == 0


def test_a_hugging_face_dataset_saved_on_disk_is_a_source(tmp_path):
    import datasets

    records = {"anchor": ["what is alpha?", "what is beta?"], "positive": ["Alpha is first.", "Beta is second."]}
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(records)}).save_to_disk(str(saved))
    tables = ingest(IngestParams(source=str(saved), format="pairs"))
    assert tables["queries"]["text"].to_pylist() == records["anchor"]
    assert tables["corpus"]["text"].to_pylist() == records["positive"]
    with pytest.raises(InputError, match=r"no split 'dev' \(it has \['train'\]\): set ingest.split"):
        ingest(IngestParams(source=str(saved), format="pairs", split="dev"))
    files = tmp_path / "files"  # a folder of data files, as load_dataset reads one
    write_jsonl(files / "train.jsonl", [{"q": a, "d": p} for a, p in zip(records["anchor"], records["positive"])])
    from_files = ingest(IngestParams(source=str(files), format="pairs", anchor_column="q", positive_column="d"))
    assert from_files["queries"].equals(tables["queries"]) and from_files["corpus"].equals(tables["corpus"])
