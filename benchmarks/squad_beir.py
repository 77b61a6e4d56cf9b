"""Turn SQuAD into a BEIR folder whose queries have several positives, for benchmarks/false_negatives.py.

    python benchmarks/squad_beir.py ../shared/datasets/squad_v1.1_dev/dev-v1.1.json OUT_DIR

Questions that share a paragraph ask about the same passage: each paragraph's first question is a query, its
other questions are the query's positives, and the corpus is every other question of the file (so the questions
on the article's other paragraphs are the hard negatives). Paragraphs with a single question give no query.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.beir import write  # noqa: E402


def convert(squad: Path, out: Path) -> Path:
    articles = json.loads(Path(squad).read_text(encoding="utf-8"))["data"]
    corpus, queries, positives = {}, {}, {}
    for article in articles:
        for paragraph in article["paragraphs"]:
            asked = [(qa["id"], qa["question"].strip()) for qa in paragraph["qas"]]
            (first, text), others = asked[0], asked[1:]
            corpus.update(others)
            queries["q" + first] = text
            positives["q" + first] = [i for i, _ in others]
    return write(out, corpus, queries, positives)


if __name__ == "__main__":
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
