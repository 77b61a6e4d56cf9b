"""Turn SICK into a BEIR folder whose queries have several positives, for benchmarks/false_negatives.py.

    python benchmarks/sick_beir.py ../shared/datasets/sick/SICK.txt OUT_DIR

Queries are SICK's `sentence_A`s; a query's positives are the `sentence_B`s it entails with relatedness >= 4
(paraphrases, in effect); the corpus is every sentence of SICK. Only queries with at least one positive are kept.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path


def sentence_id(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def convert(sick: Path, out: Path, min_relatedness: float = 4.0) -> Path:
    with open(sick, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    sentences = dict.fromkeys(s for r in rows for s in (r["sentence_A"], r["sentence_B"]))
    positives: dict[str, list[str]] = {}
    for row in rows:
        entails = row["entailment_label"] == "ENTAILMENT" and float(row["relatedness_score"]) >= min_relatedness
        if entails and row["sentence_B"] != row["sentence_A"]:
            positives.setdefault(row["sentence_A"], []).append(row["sentence_B"])
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    (out / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": sentence_id(s), "title": "", "text": s}) + "\n" for s in sentences)
    )
    (out / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": "q" + sentence_id(q), "text": q}) + "\n" for q in positives)
    )
    with open(out / "qrels" / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for query, docs in positives.items():
            handle.writelines(f"q{sentence_id(query)}\t{sentence_id(d)}\t1\n" for d in dict.fromkeys(docs))
    return out


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
