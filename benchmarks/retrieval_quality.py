"""Retrieval quality of each encoder setting: nDCG@10 and Recall@100 on a BEIR test split, full corpus, exact search.

    python benchmarks/retrieval_quality.py BEIR_FOLDER [--settings torch:fp32,torch:bf16,onnx:fp32,onnx:int8]
        [--split test] [--threads N]

Embeds the whole corpus and the split's queries with each `runtime:precision` setting of pairforge's Encoder
(title + ". " + text, as the embed stage does) and prints, per setting, the corpus throughput, the vectors' worst
cosine to the first setting's, and nDCG@10 / Recall@100 (binary relevance, qrels score > 0). The first setting
is the reference: torch fp32 gives the same vectors as sentence-transformers' `encode`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pairforge.pipeline.models.encoder import Encoder  # noqa: E402


def load_beir(folder: Path, split: str) -> tuple[list[str], list[str], list[str], dict[str, set[str]]]:
    """Document ids, document texts, the split's query texts and, per query, its relevant document ids."""
    doc_ids, doc_texts = [], []
    with open(folder / "corpus.jsonl") as handle:
        for line in handle:
            doc = json.loads(line)
            doc_ids.append(str(doc["_id"]))
            doc_texts.append(f"{doc['title']}. {doc['text']}" if doc.get("title") else doc["text"])
    relevant: dict[str, set[str]] = {}
    with open(folder / "qrels" / f"{split}.tsv") as handle:
        next(handle)
        for line in handle:
            query, doc, score = line.rstrip("\n").split("\t")
            if float(score) > 0:
                relevant.setdefault(query, set()).add(doc)
    queries = {}
    with open(folder / "queries.jsonl") as handle:
        for line in handle:
            query = json.loads(line)
            queries[str(query["_id"])] = query["text"]
    ids = sorted(relevant, key=lambda q: (len(q), q))
    return doc_ids, doc_texts, [queries[q] for q in ids], [relevant[q] for q in ids]


def ndcg_recall(
    doc_vectors: np.ndarray, query_vectors: np.ndarray, doc_ids: list[str], relevant: list[set[str]]
) -> tuple[float, float]:
    """Mean nDCG@10 and Recall@100 of exact inner-product search (binary gains)."""
    index = faiss.IndexFlatIP(doc_vectors.shape[1])
    index.add(doc_vectors)
    _, found = index.search(query_vectors, 100)
    ndcg, recall = [], []
    discounts = 1.0 / np.log2(np.arange(2, 12))
    for rows, wanted in zip(found, relevant):
        # FAISS pads a result shorter than 100 (a corpus under 100 documents) with row -1, which is no document.
        hits = np.array([r >= 0 and doc_ids[r] in wanted for r in rows])
        ideal = discounts[: min(len(wanted), 10)].sum()
        ndcg.append(float((hits[:10] * discounts).sum() / ideal))
        recall.append(hits.sum() / len(wanted))
    return float(np.mean(ndcg)), float(np.mean(recall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("beir", type=Path, help="folder with corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv")
    parser.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    parser.add_argument("--settings", default="torch:fp32,torch:bf16,onnx:fp32,onnx:int8")
    parser.add_argument("--split", default="test")
    parser.add_argument("--threads", type=int, default=0, help="torch / ONNX Runtime threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    doc_ids, doc_texts, query_texts, relevant = load_beir(args.beir, args.split)
    print(f"{args.beir.name} {args.split}: {len(doc_texts)} documents, {len(query_texts)} queries, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'runtime:precision':18} {'docs/s':>8} {'min cos':>8} {'nDCG@10':>8} {'R@100':>7}")
    reference = None
    for setting in args.settings.split(","):
        runtime, precision = setting.split(":")
        encoder = Encoder(args.model, device="cpu", precision=precision, runtime=runtime)
        started = time.perf_counter()
        docs = encoder.encode(doc_texts)[0]
        rate = len(doc_texts) / (time.perf_counter() - started)
        queries = encoder.encode(query_texts)[0]
        if reference is None:
            reference = docs
        ndcg, recall = ndcg_recall(docs, queries, doc_ids, relevant)
        cosine = np.sum(docs * reference, axis=1).min()
        print(f"{setting:18} {rate:8.1f} {cosine:8.5f} {ndcg:8.4f} {recall:7.4f}", flush=True)


if __name__ == "__main__":
    main()
