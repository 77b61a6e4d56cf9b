"""False-negative rate of mined negatives: pairforge's filter against sentence-transformers' mine_hard_negatives.

    python benchmarks/false_negatives.py DATASET_DIR [--split train,test] [--cross-encoder PATH] [--target 0.05]
        [--likely 0.1] [--json OUT]

Takes a BEIR folder whose queries have several judged positives, keeps the first positive of each query and
hides the others, mines (and filters) negatives, and reports per setting:
- false-negative rate: the share of kept negatives that are hidden positives (over queries with hidden ones);
- hardness: mean similarity (the embedding model's cosine), mean and median rank of the kept negatives, and the
  mean rank over the queries every setting filled (rank*: deep negatives that fill a query others leave short do
  not count against a setting there);
- queries left short of `num_negatives`;
and then what pairforge says of itself on the whole data (every positive known): the filter's own hidden-positive
estimate, and with `--target` the calibrated setting and its cross-fitted estimate.
pairforge runs as users run it (stage processes, Ray); the peer runs in this process on the same vectors
(seeded into its own embedding cache: both sides' vectors agree to 1e-6, see tests/models/test_encoder.py).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pairforge.pipeline import artifacts, models, schema  # noqa: E402

MODEL = "packaged:all-MiniLM-L6-v2"


def hide_positives(source: Path, out: Path, splits: list[str]) -> dict[str, set[str]]:
    """Write a BEIR folder keeping one positive per query; return the hidden positives per query."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (out / name).unlink(missing_ok=True)
    rows = []
    for split in splits:
        with open(source / "qrels" / f"{split}.tsv") as handle:
            rows += [r for r in csv.DictReader(handle, delimiter="\t") if float(r["score"]) > 0]
    kept, hidden = {}, {}
    for row in rows:
        query, doc = row["query-id"], row["corpus-id"]
        if query not in kept:
            kept[query] = doc
        elif doc != kept[query]:
            hidden.setdefault(query, set()).add(doc)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (out / name).symlink_to(source / name)
    with open(out / "qrels" / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{q}\t{d}\t1\n" for q, d in kept.items())
    return hidden


def full_qrels(source: Path, out: Path, splits: list[str]) -> None:
    """The BEIR folder with every positive of the pooled splits, as a user would run pairforge on it."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (out / name).unlink(missing_ok=True)
        (out / name).symlink_to(source / name)
    with open(out / "qrels" / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for split in splits:
            with open(source / "qrels" / f"{split}.tsv") as rows:
                handle.writelines(
                    f"{r['query-id']}\t{r['corpus-id']}\t1\n"
                    for r in csv.DictReader(rows, delimiter="\t")
                    if float(r["score"]) > 0
                )


def own_estimates(source: Path, tmp: Path, splits: list[str], mine: dict, likely: float | None, target: float | None):
    """What pairforge says of itself on the whole data (every positive known): the filter's hidden-positive
    estimate with the default params, with `likely` the learned rule's (`filter.likely_positive_above`), and with
    `target` the calibrated setting's cross-fitted estimate; and, for the first two, the negatives per query as a
    user with these labels gets them (the multi-positive queries' from the protocol, whose hidden positives are
    unlabelled there; with the learned rule, each judged by the other fold's model)."""
    full_qrels(source, tmp / "full-beir", splits)
    workdir = tmp / "full"
    workdir.mkdir(exist_ok=True)
    found, negatives = {}, {}
    settings = [("default", {})]
    settings += [(f"likely_positive_above={likely}", {"likely_positive_above": likely})] if likely is not None else []
    settings += [(f"target {target}", {"target_fn_rate": target})] if target is not None else []
    for label, filter_ in settings:
        write_params(workdir, tmp / "full-beir", mine, filter_)
        for name in ("ingest", "pairs", "embed", "index", "mine", "generate", "filter") if not found else ("filter",):
            stage(workdir, name)
        found[label] = artifacts.manifest(workdir / "data/filtered/calibration")["false_negatives"]
        if not label.startswith("target"):
            protocol = artifacts.read(workdir / "data/filtered/calibration")
            protocol = protocol.filter(pc.equal(protocol["decision"], "kept"))
            calibrated = set(protocol["query_id"].to_pylist())
            rows = {q: kept for q, kept in pairforge_negatives(workdir, "filtered").items() if q not in calibrated}
            for q, d, s, r in zip(*(protocol[c].to_pylist() for c in ("query_id", "doc_id", "score", "rank"))):
                rows.setdefault(q, []).append((d, s, r))
            negatives[label] = rows
    return found, negatives


def stage(workdir: Path, name: str) -> float:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", f"pairforge.{name}"], cwd=workdir, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"stage {name} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def write_params(workdir: Path, source: Path, mine: dict, filter_: dict) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(source=str(source), split="train")
    params["embed"].update(cache=str(workdir.parent / "vectors"))  # one embedding cache for every project here
    params["mine"].update(mine)
    params["filter"].update(filter_)
    params["generate"].update(rules=[], llm_backend="none")  # no edits: the filter only needs the artifact
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def measure(negatives: dict[str, list[tuple[str, float, int]]], hidden: dict[str, set[str]], queries: int, n: int):
    judged = [(d in hidden[q], s, r) for q in hidden for d, s, r in negatives.get(q, [])]
    every = [(s, r) for rows in negatives.values() for _, s, r in rows]
    return {
        "false_negative_rate": float(np.mean([f for f, _, _ in judged])) if judged else 0.0,
        "false_negatives": int(sum(f for f, _, _ in judged)),
        "negatives_judged": len(judged),
        "mean_score": float(np.mean([s for s, _ in every])) if every else float("nan"),
        "mean_rank": float(np.mean([r for _, r in every if r is not None])) if every else float("nan"),
        "median_rank": float(np.median([r for _, r in every if r is not None])) if every else float("nan"),
        "queries_short": queries - sum(len(v) >= n for v in negatives.values()),
        "mean_rank_labelled": float(np.mean([r for _, _, r in judged if r is not None])) if judged else float("nan"),
    }


def mean_rank_where_all_filled(found: dict[str, dict[str, list[tuple[str, float, int]]]], n: int):
    """How many queries every setting gave `n` negatives, and each setting's mean rank over them: hardness on the
    same queries (a setting that fills a query others leave short, from deeper in the corpus, is not charged)."""
    filled = [{q for q, rows in negatives.items() if len(rows) >= n} for negatives in found.values()]
    common = set.intersection(*filled) if filled else set()
    return len(common), {
        label: float(np.mean([r for q in common for _, _, r in negatives[q][:n]])) if common else float("nan")
        for label, negatives in found.items()
    }


def pairforge_negatives(workdir: Path, artifact: str) -> dict[str, list[tuple[str, float, int]]]:
    table = artifacts.read(workdir / "data" / artifact / "negatives")
    found: dict[str, list[tuple[str, float, int]]] = {}
    for q, d, s, r in zip(*(table[c].to_pylist() for c in ("query_id", "doc_id", "score", "rank"))):
        found.setdefault(q, []).append((d, s, r))
    return found


def peer_negatives(workdir: Path, relative_margin: float | None, num_negatives: int, range_max: int, cache: Path):
    """mine_hard_negatives on pairforge's ingested texts, its cache seeded with pairforge's vectors.

    Scores and ranks of the peer's negatives are looked up in pairforge's candidates (same vectors, same order).
    """
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    corpus = artifacts.read(workdir / "data/ingested/corpus")
    queries = artifacts.read(workdir / "data/ingested/queries")
    positives = artifacts.read(workdir / "data/ingested/positives")
    doc_text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
    anchors = [query_text[q] for q in positives["query_id"].to_pylist()]
    docs = [doc_text[d] for d in positives["doc_id"].to_pylist()]
    model = SentenceTransformer(str(models.resolve(MODEL)), device="cpu")
    all_docs = list(dict.fromkeys(list(doc_text.values()) + docs))
    seed_peer_cache(workdir, model, list(dict.fromkeys(anchors)), all_docs, query_text, doc_text, cache)
    mined = mine_hard_negatives(
        Dataset.from_dict({"anchor": anchors, "positive": docs}),
        model,
        corpus=list(doc_text.values()),
        range_max=range_max,
        num_negatives=num_negatives,
        relative_margin=relative_margin,
        use_faiss=True,
        output_format="labeled-pair",
        cache_folder=str(cache),
        verbose=False,
    )
    vectors = load_vectors(workdir)
    args_range_max = range_max
    candidates = artifacts.read(workdir / "data/mined/candidates")
    lookup = {
        (q, d): (s, r)
        for q, d, s, r in zip(*(candidates[c].to_pylist() for c in ("query_id", "doc_id", "score", "rank")))
    }
    doc_id = {t: d for d, t in doc_text.items()}
    query_id = {t: q for q, t in query_text.items()}
    found: dict[str, list[tuple[str, float, int]]] = {}
    for anchor, text, label in zip(mined["anchor"], mined["positive"], mined["label"]):
        if label == 0:
            q, d = query_id[anchor], doc_id[text]
            # the peer's pool can reach past range_max (see pipeline/mine.py); score those from the vectors
            score, rank = lookup.get((q, d), (float(vectors["queries", q] @ vectors["corpus", d]), args_range_max))
            found.setdefault(q, []).append((d, score, rank))
    return found


def load_vectors(workdir: Path) -> dict[tuple[str, str], np.ndarray]:
    vectors = {}
    for name in ("corpus", "queries"):
        table = artifacts.read(workdir / "data/embeddings" / name)
        vectors.update({(name, i): v for i, v in zip(table["id"].to_pylist(), schema.vectors_matrix(table["vector"]))})
    return vectors


def seed_peer_cache(workdir, model, queries, corpus, query_text, doc_text, cache: Path) -> None:
    """Write pairforge's vectors where mine_hard_negatives looks for cached embeddings (same hash as it uses)."""
    vectors = load_vectors(workdir)
    by_query_text = {t: vectors["queries", q] for q, t in query_text.items()}
    by_doc_text = {t: vectors["corpus", d] for d, t in doc_text.items()}
    name = model.model_card_data.base_model or ""
    for prefix, texts, lookup in (("query", queries, by_query_text), ("corpus", corpus, by_doc_text)):
        digest = hashlib.sha256(repr((name, None, None, texts)).encode(), usedforsecurity=False).hexdigest()
        np.save(cache / f"{prefix}_embeddings_{digest}.npy", np.stack([lookup[t] for t in texts]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--split", default="train", help="qrels splits to pool, comma-separated")
    parser.add_argument("--num-negatives", type=int, default=3)
    parser.add_argument("--range-max", type=int, default=100)
    parser.add_argument("--cross-encoder", type=Path, help="a cross-encoder folder for the judged setting")
    parser.add_argument("--target", type=float, help="also calibrate to this filter.target_fn_rate on the whole data")
    parser.add_argument("--likely", type=float, help="also run the learned rule, filter.likely_positive_above, there")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--workdir", type=Path, help="keep the project (data/, params.yaml) here instead of a temp dir")
    args = parser.parse_args()
    n = args.num_negatives
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir.resolve() if args.workdir else Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        hidden = hide_positives(args.dataset.resolve(), tmp / "beir", args.split.split(","))
        workdir = tmp / "project"
        workdir.mkdir(exist_ok=True)
        default_mine = {"num_negatives": n, "range_max": args.range_max}
        write_params(workdir, tmp / "beir", default_mine, {})
        # A kept workdir's stages that ran already are still valid: the data and its vectors do not change.
        done = {
            "ingest": "ingested",
            "pairs": "pairs",
            "embed": "embeddings",
            "index": "index",
            "generate": "generated",
        }
        setup = {name: stage(workdir, name) for name, out in done.items() if not (workdir / "data" / out).exists()}
        queries = artifacts.read(workdir / "data/ingested/queries").num_rows
        results, found_by = {}, {}
        settings = {
            "pairforge mine only, no margin": ({"relative_margin": None}, None),
            "pairforge default": ({}, {}),
        }
        if args.cross_encoder:
            settings["pairforge default + cross-encoder judge"] = ({}, {"cross_encoder": str(args.cross_encoder)})
        for label, (mine, filter_) in settings.items():
            write_params(workdir, tmp / "beir", {**default_mine, **mine}, filter_ or {})
            seconds = stage(workdir, "mine")
            artifact = "mined"
            if filter_ is not None:
                seconds += stage(workdir, "filter")
                artifact = "filtered"
            found_by[label] = pairforge_negatives(workdir, artifact)
            results[label] = {**measure(found_by[label], hidden, queries, n), "seconds": seconds}
        estimates, labelled = own_estimates(args.dataset.resolve(), tmp, args.split.split(","), default_mine,
                                            args.likely, args.target)  # fmt: skip
        for setting, rows in labelled.items():
            label = f"pairforge {setting}, all labels known"
            found_by[label] = rows
            results[label] = measure(rows, hidden, queries, n)
        cache = tmp / "peer-cache"
        cache.mkdir(exist_ok=True)
        for label, margin in (("peer top-k (no margin)", None), ("peer relative_margin=0.05", 0.05)):
            started = time.perf_counter()
            found_by[label] = peer_negatives(workdir, margin, n, args.range_max, cache)
            results[label] = {**measure(found_by[label], hidden, queries, n), "seconds": time.perf_counter() - started}
        common, ranks = mean_rank_where_all_filled(found_by, n)
        for label, rank in ranks.items():
            results[label]["mean_rank_common"] = rank
    print(
        f"\n{args.dataset.name}: {queries} queries, {len(hidden)} with hidden positives "
        f"({sum(map(len, hidden.values()))} hidden), {n} negatives per query; setup {setup}"
    )
    print(f"{'setting':50} {'FN rate':>8} {'FN':>5} {'judged':>7} {'mean score':>10} {'mean rank':>9} {'median':>6} "
          f"{'rank*':>6} {'rank+':>6} {'short':>6}")  # fmt: skip
    for label, r in results.items():
        print(
            f"{label:50} {r['false_negative_rate']:8.3f} {r['false_negatives']:5d} {r['negatives_judged']:7d} "
            f"{r['mean_score']:10.4f} {r['mean_rank']:9.2f} {r['median_rank']:6.1f} {r['mean_rank_common']:6.2f} "
            f"{r['mean_rank_labelled']:6.2f} {r['queries_short']:6d}"
        )
    print(f"rank*: mean rank over the {common} queries every setting gave {n} negatives; rank+: over the queries "
          "with hidden positives")  # fmt: skip
    print(
        "all labels known: pairforge on the whole data; the multi-positive queries' negatives are the protocol's "
        "(with the learned rule,\n  each query judged by a model that never saw it)"
    )
    print("\npairforge on the whole data, its own hidden-positive estimate (data/filtered/calibration):")
    for label, r in estimates.items():
        if r["rate"] is None:
            print(f"  {label}: not measured ({r['why_no_rate']})")
            continue
        tuned = r.get("tuning")
        crossed = ""
        if tuned:
            crossed = f"; cross-fitted {tuned['cross_fitted_rate']:.3f} {tuned['cross_fitted_interval']}"
            crossed += f", setting {tuned['setting']}, target met: {tuned['met']}"
        print(
            f"  {label}: FN rate {r['rate']:.3f} {r['interval']} over {r['queries']} queries, mean score "
            f"{r['mean_score']:.4f}, mean rank {r['mean_rank']:.2f}, short {r['queries_short']}{crossed}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"dataset": str(args.dataset), "results": results, "own_estimates": estimates}, indent=2)
        )


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
