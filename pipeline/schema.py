"""One Arrow schema per artifact, and the one error type for bad input.

Every artifact the pipeline writes is checked against its schema here, so a wrong column or type is caught where
it is made, with the file, row and field named, rather than three stages later inside a library.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SCHEMA_VERSION = 1


class InputError(ValueError):
    """Bad input: names the file, the row (1-based line or record number) and the field."""

    def __init__(self, source: str, row: int | None, field: str | None, problem: str):
        self.source, self.row, self.field, self.problem = str(source), row, field, problem
        where = self.source
        if row is not None:
            where += f", row {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # rebuilt whole where Ray hands a worker's exception to the stage process
        return type(self), (self.source, self.row, self.field, self.problem)


class EndpointError(RuntimeError):
    """An LLM endpoint that cannot do a stage's work: it refuses it (401 / 403 / 404, a redirect), it is down, or
    it failed on more items than the stage's failure budget allows. The stage fails with this one line; the work
    finished before it is cached, so the next run resumes."""


CORPUS = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("title", pa.string())])
QUERIES = pa.schema([("query_id", pa.string()), ("text", pa.string())])
POSITIVES = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.float32())])
# pairs/positives: where each pair comes from (`judged`: ingested; `generated`: a query an LLM wrote, round-tripped)
PAIR_POSITIVES = POSITIVES.append(pa.field("positive_kind", pa.string()))
# pairs/written: every query an LLM wrote (query_id and text null where the ask failed), its decision and measures
WRITTEN_QUERIES = pa.schema(
    [
        ("query_id", pa.string()), ("doc_id", pa.string()), ("style", pa.string()), ("text", pa.string()),
        ("decision", pa.string()), ("reason", pa.string()), ("rank", pa.int32()), ("score", pa.float32()),
        ("best_other", pa.float32()), ("near", pa.int32()), ("copied_words", pa.int32()), ("ce_score", pa.float32()),
        ("raw_output", pa.string()),
    ]
)  # fmt: skip
TOPICS = pa.schema([("id", pa.string()), ("topic", pa.int32()), ("distance", pa.float32())])
CANDIDATES = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("pos_score", pa.float32()),
        ("decision", pa.string()),
        ("reason", pa.string()),
    ]
)
NEGATIVES = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("pos_score", pa.float32()),
        ("topic", pa.int32()),
    ]
)
# Queries with fewer negatives than `mine.num_negatives`, and why (mine's window, or the filter's refills).
SHORT_QUERIES = pa.schema(
    [
        ("query_id", pa.string()),
        ("negatives", pa.int32()),
        ("depth", pa.int32()),  # candidates inspected: how far its window went
        ("reason", pa.string()),
        ("detail", pa.string()),  # what rejected the inspected candidates, by reason
    ]
)
# Every mined candidate the filter judged, in its round, with the judges' scores.
# The teacher's score of each (query, positive) and (query, kept negative) pair: the filter's cross-encoder, the
# strongest judge it runs, for distillation targets (n-tuple-scores). Empty when the filter ran no cross-encoder.
TEACHER = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("score", pa.float32())])
# Candidates the judges rejected as relevant with high confidence (`filter.promote_above`): proposed extra
# positives, a qrels delta. `confidence`: the lowest of the judges' scores (cross-encoder probability, LLM P(yes)).
PROMOTED = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("confidence", pa.float32()),
        ("judges", pa.string()),
    ]
)
JUDGED = pa.schema(
    [
        ("query_id", pa.string()),
        ("doc_id", pa.string()),
        ("rank", pa.int32()),
        ("score", pa.float32()),
        ("pos_score", pa.float32()),
        ("round", pa.int32()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("scores", pa.map_(pa.string(), pa.float32())),
    ]
)
# Generated edits: one row per edit made (rule or LLM); `preserves_meaning` marks paraphrases (positives).
CONTRAST = pa.schema(
    [
        ("pair_id", pa.string()),
        ("source_kind", pa.string()),
        ("source_id", pa.string()),
        ("original", pa.string()),
        ("edited", pa.string()),
        ("op", pa.string()),
        ("generator", pa.string()),
        ("preserves_meaning", pa.bool_()),
        ("change", pa.string()),  # what the edit changed, e.g. "decreases -> increases"
        ("raw_output", pa.string()),
    ]
)
# Every (source, op) tried: applied, not_applicable, or why the generator failed (unparseable_output, http_500...).
ATTEMPTS = pa.schema(
    [
        ("source_kind", pa.string()),
        ("source_id", pa.string()),
        ("op", pa.string()),
        ("generator", pa.string()),
        ("outcome", pa.string()),
    ]
)
REJECTIONS = pa.schema(
    [
        ("stage", pa.string()),
        ("kind", pa.string()),
        ("key", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("scores", pa.map_(pa.string(), pa.float32())),
    ]
)


def embeddings(dim: int, model: str = "", fingerprint: str = "") -> pa.Schema:
    """Vectors are fixed-size float32 lists; the model that made them travels in the schema metadata."""
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim))])
    return schema.with_metadata({"model": model, "fingerprint": fingerprint})


def vectors_column(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """(rows, dim) array -> the contract's vectors column: fixed_size_list<float32>[dim]."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])


def vectors_matrix(column: pa.ChunkedArray | pa.FixedSizeListArray) -> np.ndarray:
    """Vectors column -> (rows, dim) float32 array without a per-row Python loop."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    dim = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)


def validate(table: pa.Table, schema: pa.Schema, source: str, required_text: tuple[str, ...] = ()) -> pa.Table:
    """Check columns and types, and that `required_text` columns hold non-blank strings.

    Returns the table cast to the schema's exact types (e.g. int64 score -> float32), so downstream code can rely
    on them. Raises InputError naming the first bad row and field.
    """
    for field in schema:
        if field.name not in table.column_names:
            raise InputError(source, None, field.name, "missing column")
    table = table.select(schema.names)
    columns = []
    for field in schema:
        column = table.column(field.name)
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
                raise InputError(source, None, field.name, f"expected {field.type}, found {column.type}") from err
        if not field.nullable or field.name in required_text or field.name.endswith("_id") or field.name == "id":
            nulls = column.is_null()
            if column.null_count:
                row = nulls.to_pylist().index(True) + 1
                raise InputError(source, row, field.name, "value is missing (null)")
        columns.append(column)
    table = pa.Table.from_arrays(columns, schema=schema)
    for name in required_text:
        stripped = pc.utf8_trim_whitespace(table.column(name))
        empty = pc.equal(pc.utf8_length(stripped), 0)
        if pc.any(empty).as_py():
            row = empty.to_pylist().index(True) + 1
            raise InputError(source, row, name, "text is empty")
    return table
