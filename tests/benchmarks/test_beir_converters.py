"""The converters that make multi-positive BEIR folders for benchmarks/false_negatives.py, on the real files."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

from benchmarks import sick_beir, squad_beir, stsb_beir
from benchmarks.cross_encoder import read_sts
from tests.conftest import DATASETS, need


def read_beir(folder: Path) -> tuple[dict, dict, dict[str, list[str]]]:
    corpus = {d["_id"]: d["text"] for d in map(json.loads, (folder / "corpus.jsonl").open())}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (folder / "queries.jsonl").open())}
    positives: dict[str, list[str]] = {}
    with open(folder / "qrels" / "train.tsv") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            positives.setdefault(row["query-id"], []).append(row["corpus-id"])
    return corpus, queries, positives


def test_squad_queries_are_first_questions_and_their_positives_the_paragraphs_others(tmp_path):
    source = DATASETS / "squad_v1.1_dev" / "dev-v1.1.json"
    need(source, "SQuAD")
    corpus, queries, positives = read_beir(squad_beir.convert(source, tmp_path))
    paragraphs = [p["qas"] for a in json.loads(source.read_text())["data"] for p in a["paragraphs"]]
    asked = [qas for qas in paragraphs if len(qas) > 1]
    assert len(queries) == len(positives) == len(asked)
    for qas in asked[::50]:
        first = "q" + qas[0]["id"]
        assert queries[first] == qas[0]["question"].strip()
        assert positives[first] == [qa["id"] for qa in qas[1:]]
        assert all(corpus[qa["id"]] == qa["question"].strip() for qa in qas[1:])
    assert not {q[1:] for q in queries} & set(corpus), "a query is not its own candidate"
    assert sum(len(p) >= 2 for p in positives.values()) > 1000, "enough queries for the hidden-positive protocol"


def test_squad_passages_positives_are_the_own_paragraph_then_the_articles_others_with_an_answer(tmp_path):
    source = DATASETS / "squad_v1.1_dev" / "dev-v1.1.json"
    need(source, "SQuAD")
    corpus, queries, positives = read_beir(squad_beir.convert_passages(source, tmp_path))
    articles = json.loads(source.read_text())["data"]
    assert len(corpus) == sum(len(a["paragraphs"]) for a in articles)
    assert len(queries) == sum(len(p["qas"]) for a in articles for p in a["paragraphs"])
    for a, article in enumerate(articles[::7]):
        a *= 7
        for i, paragraph in enumerate(article["paragraphs"][::5]):
            i *= 5
            qa = paragraph["qas"][0]
            found = positives["q" + qa["id"]]
            assert found[0] == f"p{a}-{i}" and corpus[found[0]] == paragraph["context"]
            answers = [x["text"].strip().lower() for x in qa["answers"]]
            answers = [x for x in answers if len(x) >= 5 and not x.isdigit()]
            article_of = {p: text for p, text in corpus.items() if p.startswith(f"p{a}-")}
            holds = {p for p, text in article_of.items() if any(x in text.lower() for x in answers)}
            assert set(found[1:]) == holds - {found[0]}, "every other paragraph of the article with an answer, only"
    assert sum(len(p) >= 2 for p in positives.values()) > 1000, "enough queries for the hidden-positive protocol"


def test_sick_queries_keep_the_sentences_they_entail_as_positives(tmp_path):
    source = DATASETS / "sick" / "SICK.txt"
    need(source, "SICK")
    corpus, queries, positives = read_beir(sick_beir.convert(source, tmp_path))
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    entailed = [r for r in rows if r["entailment_label"] == "ENTAILMENT" and float(r["relatedness_score"]) >= 4]
    paraphrases = Counter(r["sentence_A"] for r in entailed if r["sentence_A"] != r["sentence_B"])
    assert len(queries) == len(paraphrases)
    for query, docs in list(positives.items())[::100]:
        assert queries[query] in paraphrases and len(set(docs)) == len(docs) <= paraphrases[queries[query]]
        assert all(doc in corpus for doc in docs)


def test_stsb_queries_have_their_close_paraphrases_as_positives_both_ways(tmp_path):
    source = DATASETS / "stsbenchmark"
    need(source / "sts-test.csv", "STS-B")
    corpus, queries, positives = read_beir(stsb_beir.convert(source, tmp_path))
    by_text = {text: doc for doc, text in corpus.items()}
    for query, docs in positives.items():
        for doc in docs:  # a paraphrase of the query is a query too, with the query's sentence as its positive
            assert by_text[queries[query]] in positives["q" + doc]
    close = [r for name in stsb_beir.FILES for r in read_sts(source / name) if r[0] >= 4 and r[1] != r[2]]
    assert len({s for _, a, b in close for s in (a, b)}) == len(queries)
    assert sum(len(set(p)) >= 2 for p in positives.values()) >= 20, "enough for the hidden-positive protocol"
