"""Turn STS-B into a BEIR folder whose queries have several positives, for benchmarks/false_negatives.py.

    python benchmarks/stsb_beir.py ../shared/datasets/stsbenchmark OUT_DIR

Pairs scored 4 or more (of 5) mean the same thing: each sentence of such a pair is a query whose positives are
its partners, in both directions, across the train, dev and test files; the corpus is every sentence of the
three files. Most queries have one positive; the hidden-positive protocol uses those with two or more.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.beir import text_id, write  # noqa: E402
from benchmarks.cross_encoder import read_sts  # noqa: E402

FILES = ("sts-train.csv", "sts-dev.csv", "sts-test.csv")


def convert(stsb: Path, out: Path, min_score: float = 4.0) -> Path:
    rows = [row for name in FILES for row in read_sts(Path(stsb) / name)]
    sentences = dict.fromkeys(s for _, first, second in rows for s in (first, second))
    positives: dict[str, list[str]] = {}
    for score, first, second in rows:
        if score >= min_score and first != second:
            positives.setdefault("q" + text_id(first), []).append(text_id(second))
            positives.setdefault("q" + text_id(second), []).append(text_id(first))
    queries = {"q" + text_id(s): s for s in sentences}
    return write(out, {text_id(s): s for s in sentences}, queries, positives)


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
