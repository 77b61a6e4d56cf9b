"""Turn SICK into a BEIR folder whose queries have several positives, for benchmarks/false_negatives.py.

    python benchmarks/sick_beir.py ../shared/datasets/sick/SICK.txt OUT_DIR

Queries are SICK's `sentence_A`s; a query's positives are the `sentence_B`s it entails with relatedness >= 4
(paraphrases, in effect); the corpus is every sentence of SICK. Only queries with at least one positive are kept.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.beir import text_id, write  # noqa: E402


def convert(sick: Path, out: Path, min_relatedness: float = 4.0) -> Path:
    with open(sick, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    sentences = dict.fromkeys(s for r in rows for s in (r["sentence_A"], r["sentence_B"]))
    positives: dict[str, list[str]] = {}
    for row in rows:
        entails = row["entailment_label"] == "ENTAILMENT" and float(row["relatedness_score"]) >= min_relatedness
        if entails and row["sentence_B"] != row["sentence_A"]:
            positives.setdefault("q" + text_id(row["sentence_A"]), []).append(text_id(row["sentence_B"]))
    queries = {"q" + text_id(s): s for s in sentences}
    return write(out, {text_id(s): s for s in sentences}, queries, positives)


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
