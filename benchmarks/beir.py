"""Write a BEIR folder (corpus.jsonl, queries.jsonl, qrels/train.tsv): what the dataset converters for
benchmarks/false_negatives.py share."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


def text_id(text: str) -> str:
    """A stable id for a text that has none of its own."""
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def write(out: Path, corpus: dict[str, str], queries: dict[str, str], positives: dict[str, list[str]]) -> Path:
    """`corpus` and `queries`: id -> text; `positives`: query id -> its positive document ids (each once, in order).
    Only queries with a positive are written."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in corpus.items())
    )
    (out / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": i, "text": queries[i]}) + "\n" for i in positives if positives[i])
    )
    with open(out / "qrels" / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query, docs in positives.items():
            handle.writelines(f"{query}\t{d}\t1\n" for d in dict.fromkeys(docs))
    return out
