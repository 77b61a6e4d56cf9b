"""Can a cross-encoder trained on a corpus's own qrels judge its false negatives better than the bi-encoder?

    python benchmarks/own_label_judge.py DATASET_DIR [--split train] [--epochs 1] [--learning-rate 5e-5]
        [--negatives 3] [--skip 10] [--depth 30] [--max-queries N] [--judge CROSS_ENCODER]

Cross-fitted, as a judge inside the pipeline would have to be: the packaged MiniLM with a fresh 1-logit head is
fine-tuned (benchmarks/cross_encoder.py's loop, 128 tokens) on the single-positive queries of the BEIR folder
(their positive; `--negatives` of their top candidates past rank `--skip`, as negatives), then asked about the
multi-positive queries, whose first positive is kept and the others hidden, as in benchmarks/false_negatives.py.
Among each such query's top `--depth` candidates (the kept positive aside), a hidden positive is a false negative
waiting to happen. Printed per signal: its ROC AUC at telling hidden positives from the other candidates, and how
many hidden positives it catches when it rejects a fixed share of the candidates. Signals: the bi-encoder's
cosine to the query, that over the kept positive's (the relative margin's view), cosine to the kept positive
(`filter.duplicate_cosine`'s view), closeness to the pair (`filter.pair_closeness`'s view: the two cosines' sum
over one plus the kept positive's), the cross-encoder's score, and the cross-encoder's score beside cosine to the
kept positive (mean of their ranks). `--judge` measures that cross-encoder (a folder or Hugging Face id, e.g. a
general relevance judge trained on other data) instead of training one; `--judge none` measures the bi-encoder's
signals alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cross_encoder import fine_tune  # noqa: E402
from pairforge.pipeline.models.encoder import Encoder  # noqa: E402
from pairforge.pipeline.models.scorer import CrossEncoderScorer  # noqa: E402

MODEL = "packaged:all-MiniLM-L6-v2"
BUDGETS = (0.1, 0.2)


def read_beir(folder: Path, splits: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, list[str]]]:
    """Document texts (title. text), query texts, and each query's positives in qrels order."""
    with open(folder / "corpus.jsonl") as handle:
        docs = {d["_id"]: ". ".join(p for p in (d.get("title"), d["text"]) if p) for d in map(json.loads, handle)}
    with open(folder / "queries.jsonl") as handle:
        queries = {q["_id"]: q["text"] for q in map(json.loads, handle)}
    positives: dict[str, list[str]] = {}
    for split in splits:
        with open(folder / "qrels" / f"{split}.tsv") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):
                if float(row["score"]) > 0 and row["query-id"] in queries and row["corpus-id"] in docs:
                    positives.setdefault(row["query-id"], []).append(row["corpus-id"])
    return docs, queries, {q: list(dict.fromkeys(d)) for q, d in positives.items()}


def training_pairs(top, query_ids, doc_ids, queries, docs, positives, single, args) -> list[tuple[float, str, str]]:
    """(label 0-5, query, document) for the single-positive queries: the positive, and `args.negatives` candidates
    drawn (seeded) from past rank `args.skip` of the query's top."""
    rng = random.Random(0)
    train = []
    for i in single:
        query = query_ids[i]
        deeper = [doc_ids[j] for j in top[i, args.skip :] if doc_ids[j] not in positives[query]]
        train.append((5.0, queries[query], docs[positives[query][0]]))
        train += [(0.0, queries[query], docs[d]) for d in rng.sample(deeper, min(args.negatives, len(deeper)))]
    return train


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (Mann-Whitney U over the ranks; ties count half)."""
    ranks = rankdata(scores)
    hits = labels.sum()
    return float((ranks[labels].sum() - hits * (hits + 1) / 2) / (hits * (len(labels) - hits)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--negatives", type=int, default=3)
    parser.add_argument("--skip", type=int, default=10)
    parser.add_argument("--depth", type=int, default=30)
    parser.add_argument("--max-queries", type=int, help="the first N queries with positives (a quick look)")
    parser.add_argument("--judge", help="a cross-encoder to measure instead of training one on the dataset")
    args = parser.parse_args()
    docs, queries, positives = read_beir(args.dataset, args.split.split(","))
    query_ids = list(positives)[: args.max_queries]
    doc_ids = list(docs)
    started = time.perf_counter()
    encoder = Encoder(MODEL, max_length=128)
    doc_vectors, _ = encoder.encode([docs[d] for d in doc_ids])
    query_vectors, _ = encoder.encode([queries[q] for q in query_ids])
    at = {d: i for i, d in enumerate(doc_ids)}
    top = np.argsort(-(query_vectors @ doc_vectors.T), axis=1)[:, : args.depth + 1]
    embedded_s = time.perf_counter() - started
    single = [i for i, q in enumerate(query_ids) if len(positives[q]) == 1]
    multi = [i for i, q in enumerate(query_ids) if len(positives[q]) >= 2]
    train = training_pairs(top, query_ids, doc_ids, queries, docs, positives, single, args)
    rows = []  # (query, doc, cosine, cosine of the kept positive, cosine to the kept positive, hidden)
    for i in multi:
        query, kept = query_ids[i], positives[query_ids[i]][0]
        for j in [j for j in top[i] if doc_ids[j] != kept][: args.depth]:
            cosine, kept_cosine = query_vectors[i] @ doc_vectors[j], query_vectors[i] @ doc_vectors[at[kept]]
            to_kept = doc_vectors[j] @ doc_vectors[at[kept]]
            rows.append((query, doc_ids[j], cosine, kept_cosine, to_kept, doc_ids[j] in positives[query][1:]))
    hidden = np.array([r[5] for r in rows], bool)
    if not len(rows) or not hidden.any() or hidden.all():
        sys.exit(f"{len(multi)} multi-positive queries give {hidden.sum()} hidden positives in {len(rows)} candidates")
    cosine, to_kept = np.array([r[2] for r in rows]), np.array([r[4] for r in rows])
    kept_cosine = np.array([r[3] for r in rows])
    signals = {
        "bi-encoder cosine to the query": cosine,
        "cosine / the kept positive's": cosine / kept_cosine,
        "cosine to the kept positive": to_kept,
        "closeness to the pair": (cosine + to_kept) / (1 + kept_cosine),
    }
    if args.judge == "none":
        report(args, "bi-encoder signals only", embedded_s, rows, multi, 0.0, hidden, signals)
        return
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        if args.judge:
            trained = f"judge {args.judge}"
        else:
            model, tokenizer = fine_tune(train, args.epochs, seed=0, learning_rate=args.learning_rate)
            model.eval().save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            trained = (
                f"trained on {len(single)} single-positive queries ({len(train)} pairs, {args.epochs} epoch(s), "
                f"lr {args.learning_rate}, {time.perf_counter() - started:.0f} s)"
            )
        scorer = CrossEncoderScorer(args.judge or folder, max_length=128, device="cpu")
        started = time.perf_counter()
        ce = scorer.score([queries[r[0]] for r in rows], [docs[r[1]] for r in rows])
        scored_s = time.perf_counter() - started
    signals["the judge" if args.judge else "own-label cross-encoder"] = ce
    signals["cross-encoder + cosine to kept (ranks)"] = rankdata(ce) + rankdata(to_kept)
    report(args, trained, embedded_s, rows, multi, scored_s, hidden, signals)


def report(args, trained: str, embedded_s: float, rows: list, multi: list, scored_s: float, hidden, signals) -> None:
    print(
        f"\n{args.dataset.name}: {trained} (embedding {embedded_s:.0f} s); judged "
        f"{len(rows)} top-{args.depth} candidates of {len(multi)} multi-positive queries in {scored_s:.0f} s, "
        f"{hidden.sum()} of them hidden positives"
    )
    print(f"{'signal':42} {'AUC':>6} " + " ".join(f"{f'caught @{b:.0%}':>11}" for b in BUDGETS))
    for name, score in signals.items():
        caught = [hidden[np.argsort(-score, kind="stable")[: int(b * len(rows))]].sum() for b in BUDGETS]
        print(f"{name:42} {auc(score, hidden):6.3f} " + " ".join(f"{c:11d}" for c in caught))


if __name__ == "__main__":
    main()
