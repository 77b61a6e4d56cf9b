"""The audit ledger: every rejection of every stage, with its stable reason code, counted and sampled."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from pairforge.pipeline import schema

# Each stage that rejects things writes a `rejections` artifact in the ledger's schema.
LEDGERS = {
    "ingest": "ingested/rejections",
    "pairs": "pairs/rejections",
    "mine": "mined/rejections",
    "generate": "generated/rejections",
    "filter": "filtered/rejections",
}


def entries(
    stage: str,
    kind: str,
    table: pa.Table,
    score_columns: tuple[str, ...] = (),
    key_columns: tuple[str, ...] = ("query_id", "doc_id"),
) -> pa.Table:
    """Ledger rows for the rejected rows of `table`, keyed by `key_columns` joined with "/" ("query_id/doc_id").

    `table` has `reason`, and optionally `detail` and `scores` (a map) or `score_columns` to put in the map.
    """
    keys = ["/".join(map(str, parts)) for parts in zip(*(table[c].to_pylist() for c in key_columns))]
    if "scores" in table.column_names:
        scores = table["scores"]
    else:
        columns = [table[c].to_pylist() for c in score_columns]
        scores = [
            [(name, value) for name, value in zip(score_columns, values) if value is not None and value == value]
            for values in zip(*columns)
        ]  # a measure that was not taken (None, NaN) is left out of the map
        scores = scores if columns else [[] for _ in keys]
    detail = table["detail"] if "detail" in table.column_names else [None] * len(keys)
    return pa.table(
        {
            "stage": [stage] * len(keys),
            "kind": [kind] * len(keys),
            "key": keys,
            "reason": table["reason"],
            "detail": detail,
            "scores": scores,
        },
        schema=schema.REJECTIONS,
    )


def rejections(data: Path) -> pl.LazyFrame:
    """All rejections under a data folder as one lazy frame: stage, kind, key, reason, detail, scores."""
    frames = [
        pl.scan_parquet(Path(data) / relative / "part-*.parquet")
        for relative in LEDGERS.values()
        if (Path(data) / relative).exists()
    ]
    if not frames:
        raise FileNotFoundError(f"{data}: no stage output with rejections yet (run `dvc repro` first)")
    return pl.concat(frames)


def summary(data: Path, samples: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Counts by (stage, reason), and up to `samples` example rows per reason."""
    frame = rejections(data)
    counts = frame.group_by("stage", "reason").len("rows").sort("stage", "rows", descending=[False, True]).collect()
    examples = frame.group_by("stage", "reason", maintain_order=True).head(samples).drop("scores").collect()
    return counts, examples
