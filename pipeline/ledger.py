"""The audit ledger: every rejection of every stage, with its stable reason code, counted and sampled."""

from __future__ import annotations

from pathlib import Path

import polars as pl

# Stage outputs whose rows carry a decision; `rejections` artifacts hold rejected rows only.
LEDGERS = {"ingest": "ingested/rejections", "mine": "mined/candidates"}


def rejections(data: Path) -> pl.LazyFrame:
    """All rejections under a data folder as one lazy frame: stage, kind, key, reason, detail."""
    frames = []
    for stage, relative in LEDGERS.items():
        folder = Path(data) / relative
        if not folder.exists():
            continue
        frame = pl.scan_parquet(folder / "part-*.parquet")
        if stage == "mine":
            frame = frame.filter(pl.col("decision") == "rejected").select(
                pl.lit("mine").alias("stage"),
                pl.lit("candidate").alias("kind"),
                (pl.col("query_id") + "/" + pl.col("doc_id")).alias("key"),
                "reason",
                pl.format(
                    "rank {} score {} positive {}", pl.col("rank").cast(pl.String).fill_null("-"), "score", "pos_score"
                ).alias("detail"),
            )
        else:
            frame = frame.select("stage", "kind", "key", "reason", "detail")
        frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"{data}: no stage output with rejections yet (run `dvc repro` first)")
    return pl.concat(frames)


def summary(data: Path, samples: int = 3) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Counts by (stage, reason), and up to `samples` example rows per reason."""
    frame = rejections(data)
    counts = frame.group_by("stage", "reason").len("rows").sort("stage", "rows", descending=[False, True]).collect()
    examples = frame.group_by("stage", "reason", maintain_order=True).head(samples).collect()
    return counts, examples
