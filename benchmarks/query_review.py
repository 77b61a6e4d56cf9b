"""A blind read of generated queries: how often is a query the round trip kept a good one, and how often is one it
rejected good after all?

    python benchmarks/query_review.py sheet DATA OUT.csv [--kept 100] [--rejected 50] [--seed 0]
    python benchmarks/query_review.py report DATA LABELS.csv

`sheet` samples kept and rejected queries from a run's `DATA/pairs/written` (queries that were written, not failed
asks), shuffles them together and writes a sheet with the document (its first 1,500 characters) and the query, and
nothing that says which were kept or why: a reader labels `answered` (y/n: the document answers it, or states it)
and `real` (y/n: a query a person could have asked or searched, not a fragment or a copy of a title) before seeing
any score. `report` reads the labels back against the run: a query is good when both are y; it prints the share of
good queries among the kept and among the rejected (each reason apart), with 95 % intervals. The sheet to commit
is `--public`: the item's ids, the labels and a digest of the query, no text.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pyarrow as pa  # noqa: E402

from pairforge.pipeline import artifacts  # noqa: E402
from pairforge.pipeline.contrast.review import interval  # noqa: E402

LABELS = ("answered", "real", "note")


def digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def written(data: Path) -> list[dict]:
    return [row for row in artifacts.read(data / "pairs/written").to_pylist() if row["text"] is not None]


def sheet(data: Path, out: Path, kept: int, rejected: int, seed: int) -> int:
    rows = written(data)
    rng = random.Random(seed)
    chosen = []
    for decision, count in (("kept", kept), ("rejected", rejected)):
        pool = [row for row in rows if row["decision"] == decision]
        chosen += rng.sample(pool, min(count, len(pool)))
    rng.shuffle(chosen)
    wanted = pa.array(sorted({r["doc_id"] for r in chosen}), pa.string())
    documents = artifacts.select(data / "ingested/corpus", "doc_id", wanted)
    text = dict(zip(documents["doc_id"].to_pylist(), documents["text"].to_pylist()))
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item", "query_id", "doc_id", "query_digest", "document", "query", *LABELS])
        for item, row in enumerate(chosen, start=1):
            writer.writerow([item, row["query_id"], row["doc_id"], digest(row["text"]), text[row["doc_id"]][:1500],
                             row["text"], "", "", ""])  # fmt: skip
    return len(chosen)


def report(data: Path, labels: Path) -> dict:
    by_id = {row["query_id"]: row for row in written(data)}
    groups: dict[str, list[bool]] = {}
    with open(labels, newline="") as handle:
        for label in csv.DictReader(handle):
            row = by_id.get(label["query_id"])
            if row is None or digest(row["text"]) != label["query_digest"]:
                continue  # a query this run no longer wrote
            good = label["answered"].strip().lower() == "y" and label["real"].strip().lower() == "y"
            groups.setdefault(row["decision"], []).append(good)
            if row["decision"] == "rejected":
                groups.setdefault(f"  {row['reason']}", []).append(good)
    found = {}
    print(f"{'group':<22}{'labelled':>9}{'good':>6}{'share':>8}  95% interval")
    for name in sorted(groups, key=lambda n: (n.strip() != n, n != "kept", n)):
        good, total = sum(groups[name]), len(groups[name])
        low, high = interval(good, total)
        found[name.strip()] = {"labelled": total, "good": good, "share": good / total, "interval": (low, high)}
        print(f"{name:<22}{total:>9}{good:>6}{100 * good / total:>7.0f}%  {100 * low:3.0f}-{100 * high:3.0f} %")
    return found


def public(labels: Path, out: Path) -> None:
    """The labelled sheet without dataset or generated text: ids, digest, labels."""
    with open(labels, newline="") as handle, open(out, "w", newline="") as target:
        writer = csv.writer(target)
        writer.writerow(["item", "query_id", "doc_id", "query_digest", *LABELS])
        for row in csv.DictReader(handle):
            writer.writerow([row["item"], row["query_id"], row["doc_id"], row["query_digest"],
                             *(row[name] for name in LABELS)])  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["sheet", "report", "public"])
    parser.add_argument("data", type=Path, help="a run's data folder (report, sheet); the labelled sheet (public)")
    parser.add_argument("file", type=Path, help="sheet: where to write it; report: the labels; public: the output")
    parser.add_argument("--kept", type=int, default=100)
    parser.add_argument("--rejected", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "sheet":
        print(f"{sheet(args.data, args.file, args.kept, args.rejected, args.seed)} queries to label in {args.file}")
    elif args.command == "report":
        report(args.data, args.file)
    else:
        public(args.data, args.file)


if __name__ == "__main__":
    main()
