"""Turn SQuAD into a BEIR folder whose queries have several positives, for benchmarks/false_negatives.py.

    python benchmarks/squad_beir.py ../shared/datasets/squad_v1.1_dev/dev-v1.1.json OUT_DIR [--passages]

Questions that share a paragraph ask about the same passage: each paragraph's first question is a query, its
other questions are the query's positives, and the corpus is every other question of the file (so the questions
on the article's other paragraphs are the hard negatives). Paragraphs with a single question give no query.

With `--passages`, question to passage instead (the shape of most retrieval sets): every paragraph is a document,
every question a query, and a question's positives are its own paragraph (first) and the other paragraphs of its
article that contain one of its answers (distant supervision, as DPR trains with): a paragraph of the same
article that holds the answer usually answers the question too. Answers shorter than five characters or made of
digits only match too much by chance and are not looked for.
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


def convert_passages(squad: Path, out: Path) -> Path:
    articles = json.loads(Path(squad).read_text(encoding="utf-8"))["data"]
    corpus, queries, positives = {}, {}, {}
    for a, article in enumerate(articles):
        paragraphs = {f"p{a}-{i}": paragraph["context"] for i, paragraph in enumerate(article["paragraphs"])}
        corpus.update(paragraphs)
        for own, paragraph in zip(paragraphs, article["paragraphs"]):
            for qa in paragraph["qas"]:
                answers = {x["text"].strip().lower() for x in qa["answers"]}
                answers = {x for x in answers if len(x) >= 5 and not x.isdigit()}
                also = [p for p, text in paragraphs.items() if p != own and any(x in text.lower() for x in answers)]
                queries["q" + qa["id"]] = qa["question"].strip()
                positives["q" + qa["id"]] = [own, *also]
    return write(out, corpus, queries, positives)


if __name__ == "__main__":
    passages = "--passages" in sys.argv[3:]
    print((convert_passages if passages else convert)(Path(sys.argv[1]), Path(sys.argv[2])))
