"""Fuzzed bad input (hypothesis): generated BEIR folders in every file format, each with one random fault, and
generated params. Every case ends in one InputError naming the faulty file, row and field (or, under
`on_bad_row: skip`, that row in the rejections with the same message), or in a correct result; never another
exception, and the DVC stage never changes its previous artifact.

`pytest tests/stages/test_fuzz.py --hypothesis-show-statistics` prints how many cases ran and how each ended.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pairforge.api import working_directory
from pairforge.pipeline import artifacts, params
from pairforge.pipeline.ingest import ingest
from pairforge.pipeline.params import IngestParams
from pairforge.pipeline.schema import InputError

FUZZ = settings(derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FORMATS = ("jsonl", "csv", "tsv", "parquet")
TEXT_FORMATS = ("jsonl", "csv", "tsv")
COLUMNS = {"corpus": ("_id", "title", "text"), "queries": ("_id", "text"), "qrels": ("query-id", "corpus-id", "score")}
# Texts: any Unicode but surrogates (not encodable) and line breaks in delimited files (they are quoted, so legal,
# but the expected physical row numbers would shift); NUL and control characters, quotes, tabs and commas included.
ANY_TEXT = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).filter(str.strip)
ONE_LINE_TEXT = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
    min_size=1,
    max_size=40,
).filter(str.strip)


@dataclass
class Folder:
    """A BEIR folder as records per file, the files' formats, and what one fault should make of it."""

    records: dict[str, list[dict]]
    formats: dict[str, str]
    raw: dict[str, bytes] = field(default_factory=dict)  # byte-level faults replace a file's encoded form
    expected: tuple[str, int | None, str | None] | None = None  # (file, row, field) of the error, None: valid
    file_level: bool = False  # the whole file is unreadable: `skip` cannot help

    def path(self, name: str) -> str:
        return f"qrels/train.{self.formats[name]}" if name == "qrels" else f"{name}.{self.formats[name]}"

    def write(self, root: Path) -> IngestParams:
        (root / "qrels").mkdir(parents=True, exist_ok=True)
        for name, records in self.records.items():
            target = root / self.path(name)
            target.write_bytes(self.raw[name] if name in self.raw else encode(records, self.formats[name], name))
        return IngestParams(source=str(root), split="train")

    def row(self, name: str, index: int) -> int:
        """The row number an error names for record `index`: JSONL / Parquet count records, CSV / TSV lines."""
        return index + (2 if self.formats[name] in ("csv", "tsv") else 1)


def encode(records: list[dict], fmt: str, name: str) -> bytes:
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    if fmt == "parquet":
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(records), sink)
        return sink.getvalue()
    text = io.StringIO()
    writer = csv.writer(text, delimiter="\t" if fmt == "tsv" else ",", lineterminator="\n")
    columns = list(dict.fromkeys([*COLUMNS[name], *(k for r in records for k in r)]))
    writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
    return text.getvalue().encode()


@st.composite
def folders(draw) -> Folder:
    formats = {name: draw(st.sampled_from(FORMATS)) for name in COLUMNS}
    text = {n: (ONE_LINE_TEXT if formats[n] in ("csv", "tsv") else ANY_TEXT) for n in COLUMNS}
    n_docs, n_queries = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    # Distinct texts (a numbered suffix), so no two records merge as duplicates and every record is kept.
    corpus = [
        {"_id": f"d{i}", "title": draw(text["corpus"]), "text": f"{draw(text['corpus'])} #{i}"} for i in range(n_docs)
    ]
    queries = [{"_id": f"q{i}", "text": f"{draw(text['queries'])} #{i}"} for i in range(n_queries)]
    qrels = [
        {"query-id": f"q{i}", "corpus-id": f"d{draw(st.integers(0, n_docs - 1))}", "score": 1} for i in range(n_queries)
    ]
    return Folder({"corpus": corpus, "queries": queries, "qrels": qrels}, formats)


# Faults: each changes one record (or one file's bytes) of a valid folder and says where the error must point.


def _record_fault(folder: Folder, data, name: str, change) -> tuple[int, str | None]:
    index = data.draw(st.integers(0, len(folder.records[name]) - 1))
    column = change(folder.records[name][index])
    return index, column


def fault_wrong_type(folder, data):
    name = data.draw(st.sampled_from(["corpus", "queries"]))
    if folder.formats[name] in ("csv", "tsv"):  # every CSV value is a string: an empty field is its wrong value
        return fault_empty_text(folder, data, name)
    column = data.draw(st.sampled_from(["_id", "text"] + (["title"] if name == "corpus" else [])))
    value = data.draw(st.sampled_from([["a"], {"k": "v"}, 1.5, True]))
    if folder.formats[name] == "parquet":  # a Parquet column has one type: every row gets the wrong one
        for record in folder.records[name]:
            record[column] = value
        return name, 0, column
    index, _ = _record_fault(folder, data, name, lambda r: r.__setitem__(column, value))
    return name, index, column


def fault_missing_field(folder, data):
    name = data.draw(st.sampled_from(["corpus", "queries", "qrels"]))
    column = data.draw(st.sampled_from(["_id", "text"] if name != "qrels" else ["query-id", "corpus-id"]))
    if folder.formats[name] in ("csv", "tsv", "parquet"):  # a column missing from the header / schema
        for record in folder.records[name]:
            del record[column]
        return name, 0, column
    index, _ = _record_fault(folder, data, name, lambda r: r.pop(column))
    return name, index, column


def fault_null(folder, data):
    name = data.draw(st.sampled_from(["corpus", "queries"]))
    if folder.formats[name] in ("csv", "tsv"):
        return fault_empty_text(folder, data, name)
    index, _ = _record_fault(folder, data, name, lambda r: r.__setitem__("text", None))
    return name, index, "text"


def fault_empty_text(folder, data, name=None):
    name = name or data.draw(st.sampled_from(["corpus", "queries"]))
    blank = data.draw(st.sampled_from(["", " ", "\t", "\u3000"]))
    index, _ = _record_fault(folder, data, name, lambda r: r.__setitem__("text", blank))
    return name, index, "text"


def fault_duplicate_id(folder, data):
    name = data.draw(st.sampled_from(["corpus", "queries"]))
    records = folder.records[name]
    records.append({**records[0], "text": "another text entirely"})
    return name, len(records) - 1, "_id"


def fault_dangling_qrel(folder, data):
    column = data.draw(st.sampled_from(["query-id", "corpus-id"]))
    index, _ = _record_fault(folder, data, "qrels", lambda r: r.__setitem__(column, "nowhere"))
    return "qrels", index, column


def fault_bad_score(folder, data):
    # ... and values past what a float (1e400) or the float32 column (1e300) holds
    score = data.draw(st.sampled_from(["high", "nan", "inf", "-inf", "", "1,5", "1" + "0" * 400, "1e300", "-4e38"]))
    if folder.formats["qrels"] == "parquet":  # a typed column: every row's score is this string
        for record in folder.records["qrels"]:
            record["score"] = score
        return "qrels", 0, "score"
    index, _ = _record_fault(folder, data, "qrels", lambda r: r.__setitem__("score", score))
    return "qrels", index, "score"


def _lines(folder: Folder, name: str) -> list[bytes]:
    return encode(folder.records[name], folder.formats[name], name).splitlines(keepends=True)


def fault_bytes(folder, data):
    """Byte-level: invalid UTF-8, a Latin-1 line among UTF-8 ones, a truncated JSON line, a JSON array line, a CSV
    row with a missing field; or a truncated Parquet file."""
    name = data.draw(st.sampled_from(["corpus", "queries", "qrels"]))
    fmt = folder.formats[name]
    if fmt == "parquet":
        whole = encode(folder.records[name], fmt, name)
        folder.raw[name] = whole[: data.draw(st.integers(1, len(whole) - 1))]
        folder.file_level = True
        return name, None, None
    lines = _lines(folder, name)
    first = 0 if fmt == "jsonl" else 1
    at = data.draw(st.integers(first, len(lines) - 1))
    kinds = ["invalid_utf8", "latin1"]
    kinds += ["truncated_json", "not_object", "huge_int", "deep_nesting"] if fmt == "jsonl" else ["short_row"]
    if fmt != "jsonl" and not any(b'"' in line for line in lines[at:]):  # nothing later could close the quote
        kinds.append("unbalanced_quote")
    kind = data.draw(st.sampled_from(kinds))
    event(f"bytes fault: {kind}")
    if kind == "invalid_utf8":
        lines[at] = lines[at][:1] + data.draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + lines[at][1:]
    elif kind == "latin1":
        lines[at] = lines[at].rstrip(b"\n") + " café".encode("latin-1") + b"\n"
    elif kind == "truncated_json":
        lines[at] = lines[at][: data.draw(st.integers(1, len(lines[at]) - 3))] + b"\n"
    elif kind == "not_object":
        lines[at] = b'["a", "b"]\n'
    elif kind == "huge_int":  # more digits than Python converts
        lines[at] = b'{"_id": ' + b"9" * data.draw(st.integers(4301, 20_000)) + b', "text": "x"}\n'
    elif kind == "deep_nesting":
        lines[at] = b'{"_id": "x", "text": ' + b"[" * data.draw(st.integers(10_000, 200_000)) + b"\n"
    elif kind == "unbalanced_quote":
        lines[at] = b'"' + lines[at]
    else:
        separator = b"\t" if fmt == "tsv" else b","
        lines[at] = separator.join(lines[at].rstrip(b"\n").split(separator)[:1]) + b"\n"
    folder.raw[name] = b"".join(lines)
    return name, at, None  # a line index: its row is at + 1


def valid_variant(folder, data):
    """Legal oddities that must read back exactly: BOM, CRLF, blank lines, extra fields, a 200k-character text."""
    name = data.draw(st.sampled_from(["corpus", "queries"]))
    kind = data.draw(st.sampled_from(["bom", "crlf", "blank_lines", "extra_field", "huge_text"]))
    event(f"valid variant: {kind}")
    if kind == "extra_field":
        for record in folder.records[name]:
            record["extra"] = "ignored"
    elif kind == "huge_text":
        folder.records[name][0]["text"] = "long words " * 20_000
    elif folder.formats[name] != "parquet":
        lines = _lines(folder, name)
        if kind == "bom":
            lines[0] = b"\xef\xbb\xbf" + lines[0]
        elif kind == "crlf":
            lines = [line.replace(b"\n", b"\r\n") for line in lines]
        else:
            lines = [line + b"\n" for line in lines]
        folder.raw[name] = b"".join(lines)
    return None


FAULTS = [
    fault_wrong_type,
    fault_missing_field,
    fault_null,
    fault_empty_text,
    fault_duplicate_id,
    fault_dangling_qrel,
    fault_bad_score,
    fault_bytes,
    valid_variant,
]


@st.composite
def faulty_folders(draw) -> Folder:
    folder = draw(folders())
    fault = draw(st.sampled_from(FAULTS))
    where = fault(folder, _Drawer(draw))
    if where is not None:
        name, index, column = where
        fault_row = None if index is None else (index + 1 if fault is fault_bytes else folder.row(name, index))
        folder.expected = (folder.path(name).split("/")[-1], fault_row, column)
        event(f"fault: {fault.__name__} in {folder.formats[name]}")
    return folder


class _Drawer:
    """Lets the fault functions call `data.draw(...)` inside a composite strategy."""

    def __init__(self, draw):
        self.draw = draw


def joined(title: str | None, text: str) -> str:
    """Title and text as the default separator joins them: a title that ends a sentence or clause keeps its own
    mark ("Why? Text", not "Why?. Text")."""
    if not title:
        return text
    if title.rstrip()[-1:] in {".", "!", "?", ":", ";", ",", "…", "。", "！", "？"}:
        return f"{title.rstrip()} {text}"
    return f"{title}. {text}"


def expected_tables(folder: Folder) -> tuple[list, list]:
    corpus = [(r["_id"], joined(r.get("title"), r["text"])) for r in folder.records["corpus"]]
    queries = [(r["_id"], r["text"]) for r in folder.records["queries"]]
    return corpus, queries


def _check_error(err: InputError, root: Path, folder: Folder) -> None:
    name, row, column = folder.expected
    assert Path(err.source).name == name and Path(err.source).parent.is_relative_to(root), err
    assert (err.row, err.field) == (row, column), f"{err} (expected row {row}, field {column})"
    assert str(err).startswith(err.source)


@settings(FUZZ, max_examples=600)
@given(folder=faulty_folders())
def test_fuzzed_beir_folders_fail_with_file_row_and_field(folder):
    with tempfile.TemporaryDirectory() as root:
        config = folder.write(Path(root))
        try:
            tables = ingest(config)
        except InputError as err:
            assert folder.expected is not None, f"a valid folder was refused: {err}"
            _check_error(err, Path(root), folder)
            event("ended: InputError naming file, row and field")
            return
    assert folder.expected is None, f"the fault at {folder.expected} was not caught"
    corpus, queries = expected_tables(folder)
    assert list(zip(tables["corpus"]["doc_id"].to_pylist(), tables["corpus"]["text"].to_pylist())) == corpus
    judged = {r["query-id"] for r in folder.records["qrels"]}
    assert list(zip(tables["queries"]["query_id"].to_pylist(), tables["queries"]["text"].to_pylist())) == [
        q for q in queries if q[0] in judged
    ]
    event("ended: valid input read back exactly")


@settings(FUZZ, max_examples=300)
@given(folder=faulty_folders())
def test_fuzzed_bad_rows_are_skipped_into_the_rejections_under_skip(folder):
    with tempfile.TemporaryDirectory() as root:
        config = folder.write(Path(root))
        try:
            strict_error = None
            ingest(config)
        except InputError as err:
            strict_error = err
        try:
            tables = ingest(IngestParams(**{**config.__dict__, "on_bad_row": "skip"}))
        except InputError as err:  # only a file that can't be read, or holds no usable line, stops a skip run
            assert err.row is None and Path(err.source).name == folder.expected[0], err
            event("skip: file-level fault still stops the stage")
            return
    bad = [r for r in tables["rejections"].to_pylist() if r["reason"] == "bad_row"]
    if strict_error is None:
        assert not bad
        event("skip: valid input, nothing skipped")
        return
    assert bad[0]["detail"] == str(strict_error), "the first skipped row is the row `fail` stops at"
    assert bad[0]["key"] == f"{Path(strict_error.source).name}:{strict_error.row}"
    for later in bad[1:]:  # more rows of a whole-column fault, or qrels naming a skipped record
        same_file = later["key"].startswith(f"{folder.expected[0]}:")
        assert same_file or (later["key"].startswith("train.") and "unknown" in later["detail"]), later
    kept = set(tables["corpus"]["doc_id"].to_pylist()) | set(tables["queries"]["query_id"].to_pylist())
    assert all(isinstance(i, str) for i in kept)
    event(f"skip: {len(bad)} bad row(s) in the rejections")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ingested_project(tmp_path_factory) -> Path:
    """A project whose `data/ingested` holds a previous complete artifact."""
    from pairforge import ingest as stage

    project = tmp_path_factory.mktemp("stage")
    source = project / "good"
    Folder(
        {
            "corpus": [{"_id": "d0", "title": "", "text": "a document"}],
            "queries": [{"_id": "q0", "text": "a query"}],
            "qrels": [{"query-id": "q0", "corpus-id": "d0", "score": 1}],
        },
        dict.fromkeys(COLUMNS, "jsonl"),
    ).write(source)
    (project / "params.yaml").write_text(yaml.safe_dump({"ingest": {"source": str(source)}}))
    with working_directory(project):
        stage.main()
    return project


@settings(FUZZ, max_examples=60)
@given(folder=faulty_folders().filter(lambda f: f.expected is not None))
def test_fuzzed_bad_input_leaves_the_stage_artifact_untouched(ingested_project, folder):
    from pairforge import ingest as stage

    before = _snapshot(ingested_project / "data/ingested")
    source = ingested_project / "bad"
    shutil.rmtree(source, ignore_errors=True)
    folder.write(source)
    (ingested_project / "params.yaml").write_text(yaml.safe_dump({"ingest": {"source": str(source)}}))
    with working_directory(ingested_project), pytest.raises(SystemExit) as stopped:
        stage.main()
    message = str(stopped.value.code)
    name, row, column = folder.expected
    assert message.startswith(f"pairforge ingest: {source}") and name in message
    assert (f", row {row}" in message) == (row is not None) and (f"field {column!r}" in message) == bool(column)
    assert _snapshot(ingested_project / "data/ingested") == before
    assert {p.name for p in (ingested_project / "data").iterdir()} == {"ingested", ".ingested.lock"}, "nothing left"
    assert artifacts.manifest(ingested_project / "data/ingested/corpus")["rows"] == 1
    event("stage: exit with one line, artifact unchanged")


# Params: any value under any key (known or not) of any section is either accepted with finite numbers, or refused
# naming params.yaml and `section.key`.

VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def params_sections(draw) -> tuple[str, dict]:
    section = draw(st.sampled_from(sorted(params.SECTIONS)))
    known = [f.name for f in fields(params.SECTIONS[section])]
    keys = draw(st.lists(st.sampled_from(known) | st.text(min_size=1, max_size=8), min_size=1, max_size=3))
    return section, {key: draw(VALUES | st.sampled_from(_defaults(section, key))) for key in keys}


def _defaults(section: str, key: str) -> list:
    """Values of the key's own type, nudged in and out of range, and non-finite floats."""
    known = {f.name: f for f in fields(params.SECTIONS[section])}
    default = known[key].default if key in known else None
    if not isinstance(default, (int, float)) or isinstance(default, bool):
        return [None]
    return [default, -1, 0, default * 2, -default, math.nan, math.inf, -math.inf, float(default) + 0.5,
            2**31 - 1, 2**31, 2**70, -(2**31), 1e6, 1e7, -1e300]  # fmt: skip


@settings(FUZZ, max_examples=800)
@given(case=params_sections())
def test_fuzzed_params_are_accepted_or_refused_naming_the_key(case):
    section, values = case
    try:
        parsed = params.parse(section, values)
    except InputError as err:
        assert err.source == "params.yaml" and err.row is None
        assert err.field in {f"{section}.{key}" for key in values}, err
        event("params: InputError naming the key")
        return
    for item in fields(parsed):
        value = getattr(parsed, item.name)
        assert not isinstance(value, float) or math.isfinite(value), f"{section}.{item.name} accepted {value}"
        if isinstance(value, int) and not isinstance(value, bool):  # what faiss, numpy and Arrow take
            assert 0 <= value <= 2**31 - 1, f"{section}.{item.name} accepted {value}"
        if isinstance(value, float):
            assert abs(value) <= 1e6, f"{section}.{item.name} accepted {value}"
    for key, written in values.items():  # accepted: every key known, every value kept as written (an int as a float)
        assert key in {item.name for item in fields(parsed)}, f"{section}.{key} is not a param, yet accepted"
        kept = getattr(parsed, key)
        assert kept == written and (type(kept) is type(written) or isinstance(kept, float)), (key, written, kept)
    unset = {item.name: item for item in fields(parsed) if item.name not in values}
    assert all(getattr(parsed, name) == getattr(params.SECTIONS[section](), name) for name in unset), "defaults"
    event("params: accepted")


@settings(FUZZ, max_examples=200)
@given(document=st.text(max_size=80) | VALUES.map(yaml.safe_dump))
def test_fuzzed_params_files_are_read_or_refused_naming_the_file(document):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / "params.yaml"
        path.write_text(document)
        loaded = {}
        for section in params.SECTIONS:
            try:
                loaded[section] = params.load(section, path)
            except InputError as err:
                assert err.source == str(path) and (err.field is None or err.field.startswith(section)), err
                event("params file: InputError naming the file")
                return
    # Read: a mapping (or nothing), whose sections, each a mapping of known keys or empty, were taken as written.
    document = yaml.safe_load(document) or {}
    assert isinstance(document, dict)
    for section, config in loaded.items():
        written = document.get(section) or {}
        assert written == {key: getattr(config, key) for key in written}, (section, written)
    event("params file: every section read")
