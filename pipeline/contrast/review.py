"""Reading kept edits as a person would: a stratified sample per op, a blind review sheet, and validity per op.

A sheet lists each sampled edit as `pair_id`, `digest` (of the edited text), `original`, `edited` in a shuffled
order, with neither its op nor its scores (a reviewer labels before seeing them), and empty `valid` (y / n) and
`why` columns; committed, a labelled sheet keeps only `pair_id`, `digest`, `valid` and `why`. `validity` joins
the labels back to the edits: per op, the share valid with a 95% Wilson interval, and overall, each op weighted
by how many edits the filter kept of it (the sample is stratified, the exported set is not).
"""

from __future__ import annotations

import csv
import hashlib
import io
import random
from pathlib import Path

import polars as pl
from scipy.stats import binomtest

from pairforge.pipeline import artifacts
from pairforge.pipeline.vocabulary import KEPT

SHEET_COLUMNS = ("pair_id", "digest", "original", "edited", "valid", "why")
LABEL_COLUMNS = ("pair_id", "digest", "valid", "why")  # what a labelled sheet keeps when committed: no dataset text
MEASURES = ("token_edits", "nll_increase", "sameness")


def kept(edits: pl.DataFrame) -> pl.DataFrame:
    return edits.filter(pl.col("decision") == KEPT)


def digest(text: str) -> str:
    """A short hash of an edit's text: a label names the edit it judged, and a rerun that edits the same source
    differently (same `pair_id`) no longer matches it."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sample(edits: pl.DataFrame, per_op: int, seed: int, ops: list[str] | None = None) -> pl.DataFrame:
    """Up to `per_op` kept edits of each op (of `ops` only, when given), seeded, ops in order of first appearance."""
    rows = kept(edits)
    if ops:
        rows = rows.filter(pl.col("op").is_in(ops))
    picked = []
    for op in rows["op"].unique(maintain_order=True).to_list():
        of_op = rows.filter(pl.col("op") == op)
        order = random.Random(f"{seed}:{op}").sample(range(of_op.height), min(per_op, of_op.height))
        picked.append(of_op[sorted(order)])
    return pl.concat(picked) if picked else rows.head(0)


def lines(picked: pl.DataFrame) -> list[str]:
    """Original -> edited per sampled edit under its op, with the checks' measures."""
    out = []
    for op in picked["op"].unique(maintain_order=True).to_list():
        rows = picked.filter(pl.col("op") == op)
        out.append(f"== {op} ({rows.height} shown)")
        for row in rows.iter_rows(named=True):
            measured = ", ".join(f"{m} {row[m]:.3g}" for m in MEASURES if row.get(m) is not None and row[m] == row[m])
            out += [f"  {row['original']}", f"  -> {row['edited']}", f"     [{row['generator']}; {measured}]"]
    return out


def write_sheet(picked: pl.DataFrame, path: Path, seed: int) -> None:
    """The blind sheet: shuffled across ops, text only, label columns empty."""
    rows = [(p, digest(e), o, e) for p, o, e in picked.select("pair_id", "original", "edited").rows()]
    random.Random(seed).shuffle(rows)
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(SHEET_COLUMNS)
    writer.writerows((*row, "", "") for row in rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_text_atomically(path, text.getvalue())


def read_labels(path: Path) -> pl.DataFrame:
    """`pair_id`, `valid` (bool), `why` from a labelled sheet or labels file; a row without a y / n label is an
    error naming the file and row."""
    labels = []
    with open(path, newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            answer = (row.get("valid") or "").strip().lower()
            if answer not in ("y", "n"):
                raise ValueError(f"{path}, row {number}, field 'valid': expected y or n, got {answer!r}")
            labels.append({"pair_id": row["pair_id"], "digest": row["digest"], "valid": answer == "y",
                           "why": row.get("why") or ""})  # fmt: skip
    return pl.DataFrame(
        labels, schema={"pair_id": pl.String, "digest": pl.String, "valid": pl.Boolean, "why": pl.String}
    )


def interval(valid: int, total: int) -> tuple[float, float]:
    ci = binomtest(valid, total).proportion_ci(method="wilson")
    return float(ci.low), float(ci.high)


def validity(edits: pl.DataFrame, labels: pl.DataFrame) -> dict:
    """Per op: labelled, valid, share and interval, and how many the filter kept; overall: the labelled share and
    the share weighted by each op's kept count. Labels of edits this run no longer keeps (or now writes
    differently) are left out and counted as `stale`: a sample of what is still kept stays a sample of it."""
    rows = kept(edits).with_columns(pl.col("edited").map_elements(digest, return_dtype=pl.String).alias("digest"))
    joined = labels.join(rows.select("pair_id", "digest", "op"), on=["pair_id", "digest"], how="left")
    stale = joined.filter(pl.col("op").is_null()).height
    joined = joined.filter(pl.col("op").is_not_null())
    counts = dict(rows.group_by("op").len().iter_rows())
    per_op = {}
    for op in rows["op"].unique(maintain_order=True).to_list():
        of_op = joined.filter(pl.col("op") == op)
        if of_op.height:
            good = int(of_op["valid"].sum())
            per_op[op] = {"labelled": of_op.height, "valid": good, "share": good / of_op.height,
                          "interval": interval(good, of_op.height), "kept": counts[op]}  # fmt: skip
    kept_of_labelled_ops = sum(r["kept"] for r in per_op.values())
    weighted = sum(r["share"] * r["kept"] for r in per_op.values()) / max(1, kept_of_labelled_ops)
    good = int(joined["valid"].sum())
    return {"per_op": per_op, "labelled": joined.height, "valid": good, "share": good / max(1, joined.height),
            "weighted_share": weighted, "kept": kept_of_labelled_ops, "stale": stale}  # fmt: skip
