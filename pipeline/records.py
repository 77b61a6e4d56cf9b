"""Records from the user's files (JSONL, CSV/TSV, Parquet) or Hugging Face datasets, checked as they are read.

An error names the file, the line (JSONL, CSV: the physical line; Parquet: the 1-based row) and the field. Under
`on_bad_row: skip` a bad row is left out instead and kept, with its error, in the rejections ledger (reason
`bad_row`); a file that can't be read at all still stops the stage.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pairforge.pipeline import hf_datasets, schema, vocabulary
from pairforge.pipeline.schema import InputError

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # the default (128 KiB) rejects long documents


class BadRows(list):
    """Where rows that can't be used go under `on_bad_row: skip`; `None` in its place raises them."""

    def rejections(self) -> pa.Table:
        return pa.table(
            {
                "stage": ["ingest"] * len(self),
                "kind": ["row"] * len(self),
                "key": [f"{Path(err.source).name}:{err.row}" for err in self],
                "reason": [vocabulary.BAD_ROW] * len(self),
                "detail": [str(err) for err in self],
                "scores": [[] for _ in self],
            },
            schema=schema.REJECTIONS,
        )


def _bad(err: InputError, bad_rows: BadRows | None) -> None:
    if bad_rows is None:
        raise err
    bad_rows.append(err)


@contextlib.contextmanager
def each_row(bad_rows: BadRows | None) -> Iterator[None]:
    """Wraps one row's checks: under `skip` a bad row is recorded and the loop goes on to the next."""
    try:
        yield
    except InputError as err:
        _bad(err, bad_rows)


def read_records(path: Path, bad_rows: BadRows | None = None) -> Iterator[tuple[int, dict]]:
    """(row number, record) pairs from a JSONL, CSV, TSV or Parquet file; unreadable rows go to `bad_rows`."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(path, None, None, f"unknown format {path.suffix!r}; expected one of {sorted(FORMATS)}")
    if not path.exists():
        raise InputError(path, None, None, "file not found")
    if path.stat().st_size == 0:
        raise InputError(path, None, None, "file is empty")
    if fmt == "parquet":
        yield from _parquet_records(path, bad_rows)
        return
    with open(path, "rb") as handle:
        raw_lines = handle.read().splitlines()
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as err:
            _bad(InputError(path, number, None, f"not valid UTF-8 ({err.reason} at byte {err.start})"), bad_rows)
            lines.append("")  # a blank in its place keeps the physical line numbers of the rows after it
    if fmt == "jsonl":
        records = _jsonl_records(path, lines, bad_rows)
    else:
        records = _delimited_records(path, lines, "\t" if fmt == "tsv" else ",", bad_rows)
    empty = True
    for item in records:
        empty = False
        yield item
    if empty:  # blank lines only, or a CSV / TSV header without rows
        raise InputError(path, None, None, "file holds no records")


def _jsonl_records(path: Path, lines: list[str], bad_rows: BadRows | None) -> Iterator[tuple[int, dict]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _bad(InputError(path, number, None, f"malformed JSON: {err.msg} at column {err.colno}"), bad_rows)
            continue
        except ValueError as err:  # an integer of more digits than Python converts (4,300)
            _bad(InputError(path, number, None, f"malformed JSON: {err}"), bad_rows)
            continue
        except RecursionError:
            _bad(InputError(path, number, None, "malformed JSON: nested too deeply"), bad_rows)
            continue
        if not isinstance(record, dict):
            _bad(InputError(path, number, None, f"expected a JSON object, found {type(record).__name__}"), bad_rows)
            continue
        yield number, record


def _delimited_records(
    path: Path, lines: list[str], delimiter: str, bad_rows: BadRows | None
) -> Iterator[tuple[int, dict]]:
    # strict: a quote never closed is an error where its field opened, not the rest of the file merged into it
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter, strict=True)
    header = next(reader, None)
    if not header:
        raise InputError(path, 1, None, "missing header row")
    while True:
        started = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            raise InputError(path, started, None, f"a quoted field opened here is never closed ({err})") from err
        number = reader.line_num
        if not values:
            continue
        if len(values) != len(header):
            problem = f"expected {len(header)} fields ({header}), found {len(values)}"
            _bad(InputError(path, number, None, problem), bad_rows)
            continue
        yield number, dict(zip(header, values))


def _parquet_records(path: Path, bad_rows: BadRows | None) -> Iterator[tuple[int, dict]]:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise InputError(path, None, None, f"not a readable Parquet file: {err}") from err
    if table.num_rows == 0:
        raise InputError(path, None, None, "file holds no records")
    broken = set()
    for name in table.column_names:  # Arrow trusts a file's strings; Python does not
        column = table[name]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            for row, value in enumerate(column.cast(pa.binary()).to_pylist(), start=1):
                try:
                    value is None or value.decode("utf-8")
                except UnicodeDecodeError as err:
                    _bad(InputError(path, row, name, f"not valid UTF-8 ({err.reason} at byte {err.start})"), bad_rows)
                    broken.add(row)
    rows = [row for row in range(1, table.num_rows + 1) if row not in broken]
    yield from zip(rows, table.take([row - 1 for row in rows]).to_pylist())


def field(
    record: dict, name: str, source: Path, row: int, required: bool = True, param: str | None = None
) -> str | None:
    """A text or id field: ids may be numbers in the file (BEIR does this), and become strings.

    A missing one is reported with the fields the row does have, and the param that names the column (`param`),
    so a file whose columns are named otherwise is one edit of params.yaml away."""
    if name not in record or record[name] is None:
        if required:
            found = ", ".join(repr(str(key)) for key in list(record)[:20]) or "none"
            hint = f"; set {param} to the column that holds it" if param else ""
            raise InputError(source, row, name, f"missing field (the row has {found}){hint}")
        return None
    value = record[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(source, row, name, f"expected a string, found {type(value).__name__}")
    value = str(value)
    if required and not value.strip():
        raise InputError(source, row, name, "text is empty")
    return value


def is_beir_folder(source: str) -> bool:
    folder = Path(source)
    return folder.is_dir() and any(folder.glob("corpus.*")) and (folder / "qrels").is_dir()


def rows(source: str, split: str, subset: str | None, bad_rows: BadRows | None) -> Iterator[tuple[int, dict]]:
    """A file's records, or a Hugging Face dataset's (a hub id or a folder)."""
    if hf_datasets.is_dataset(source):
        if is_beir_folder(source):
            raise InputError(source, None, None, "is a BEIR folder (corpus, queries, qrels): set ingest.format: beir")
        return hf_datasets.records(source, split, subset)
    return read_records(Path(source), bad_rows)
