"""pairforge (ingest, embed, index, mine as real stage processes) vs sentence-transformers' mine_hard_negatives.

Usage: python benchmarks/mine_vs_st.py [DATASET_DIR] [--max-queries N --max-docs N] [--precision P] [--json PATH].
Both sides use the same model, texts (the peer reads pairforge's ingested parquet) and mining settings; pairforge
embeds at params.yaml's embed.precision (`auto`: bf16 where the CPU runs it natively) unless --precision says
(fp32: the peer's). Wall times include interpreter, import, Ray and model start-up. Peak memory: the largest sum
of PSS over a process and all its descendants (Ray's GCS, raylet, workers), sampled every 0.1 s
(benchmarks/measure.py): shared pages count once.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure  # noqa: E402
from pairforge.pipeline import artifacts, models  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "pairs", "embed", "index", "mine")
# The embed stage's own log lines (stages/embed.py): its throughput over the texts it embedded, and what it wrote.
EMBED_RATE = re.compile(r"embedded (\d+) new texts in ([\d.]+) s \(([\d.]+) texts/s\)")
EMBED_WROTE = re.compile(r"wrote (\d+) docs and (\d+) queries")


def sample_beir(source: Path, out: Path, max_queries: int, max_docs: int) -> Path:
    """A smaller BEIR folder: the first train queries, all their positives, then other docs up to max_docs."""
    (out / "qrels").mkdir(parents=True)
    with open(source / "qrels" / "train.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    query_ids = set(list(dict.fromkeys(r["query-id"] for r in rows))[: max_queries or None])
    rows = [r for r in rows if r["query-id"] in query_ids]
    positives = {r["corpus-id"] for r in rows}
    corpus = {json.loads(line)["_id"]: line for line in (source / "corpus.jsonl").read_text().splitlines() if line}
    others = [d for d in corpus if d not in positives]
    keep = positives | set(others[: max(0, max_docs - len(positives))] if max_docs else others)
    (out / "corpus.jsonl").write_text("".join(f"{line}\n" for d, line in corpus.items() if d in keep))
    queries = (source / "queries.jsonl").read_text().splitlines()
    wanted = [line for line in queries if line.strip() and json.loads(line)["_id"] in query_ids]
    (out / "queries.jsonl").write_text("".join(f"{line}\n" for line in wanted))
    with open(out / "qrels" / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}\n" for r in rows)
    return out


def run_measured(cmd: list[str], cwd: Path, log_path: Path) -> dict:
    measured = measure.run_measured(cmd, cwd, log_path, interval=0.1)
    if measured["error"]:
        sys.exit(f"{' '.join(cmd)} failed: {measured['error']}")
    return measured


def run_pairforge(source: Path, project: Path, mine: dict, precision: str | None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["source"] = str(source.resolve())
    if precision:
        params["embed"]["precision"] = precision
    params["mine"].update(mine)  # index.topics and everything else stay as in the repo's params.yaml
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages, started = {}, time.perf_counter()
    for name in STAGES:
        stages[name] = run_measured([sys.executable, "-m", f"pairforge.{name}"], project, project / f"{name}.log")
    result = {"wall_s": time.perf_counter() - started, "stages": stages}
    result["precision"] = artifacts.manifest(project / "data/embeddings/corpus")["precision"]  # what `auto` ran
    result["peak_mib"] = max(s["peak_mib"] for s in stages.values())
    log = (project / "embed.log").read_text()
    rate_line, wrote = EMBED_RATE.search(log), EMBED_WROTE.search(log)
    if not rate_line or not wrote:
        sys.exit(f"no throughput line in {project / 'embed.log'}")
    _, seconds, rate = rate_line.groups()
    texts = int(wrote.group(1)) + int(wrote.group(2))
    result.update(texts=texts, embed_logged_s=float(seconds), texts_per_s_logged=float(rate))
    return {**result, "texts_per_s_wall": texts / stages["embed"]["wall_s"]}


def run_peer(mode: str, project: Path, model: str, mine: dict) -> dict:
    out = project / f"peer-{mode}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", mode, "--project", str(project)]
    cmd += ["--model", model, "--mine", json.dumps(mine), "--out", str(out)]
    measured = run_measured(cmd, project, project / f"peer-{mode}.log")
    return {**measured, **json.loads(out.read_text())}


def peer_worker(mode: str, project: Path, model_path: str, mine: dict, out: Path) -> None:
    """Runs in its own process: the peer as a user would call it, on pairforge's ingested texts."""
    started = time.perf_counter()
    import pyarrow.parquet as pq
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    ingested = project / "data" / "ingested"
    corpus, queries, positives = (pq.read_table(ingested / n) for n in ("corpus", "queries", "positives"))
    doc_text = dict(zip(corpus["doc_id"].to_pylist(), corpus["text"].to_pylist()))
    query_text = dict(zip(queries["query_id"].to_pylist(), queries["text"].to_pylist()))
    model = SentenceTransformer(model_path, device="cpu")
    result = {"load_s": time.perf_counter() - started}
    started = time.perf_counter()
    if mode == "encode":
        model.encode_document(list(doc_text.values()), batch_size=32, normalize_embeddings=True)
        model.encode_query(list(query_text.values()), batch_size=32, normalize_embeddings=True)
        texts, seconds = len(doc_text) + len(query_text), time.perf_counter() - started
        result.update(encode_s=seconds, texts=texts, texts_per_s=texts / seconds)
    else:
        pairs = zip(positives["query_id"].to_pylist(), positives["doc_id"].to_pylist())
        dataset = Dataset.from_list([{"anchor": query_text[q], "positive": doc_text[d]} for q, d in pairs])
        fixed = {"sampling_strategy": "top", "output_format": "labeled-pair", "use_faiss": True, "batch_size": 32}
        mined = mine_hard_negatives(dataset, model, corpus=list(doc_text.values()), **mine, **fixed, verbose=False)
        result["mine_s"] = time.perf_counter() - started
        doc_id = {text: i for i, text in doc_text.items()}
        query_id = {text: i for i, text in query_text.items()}
        negatives: dict[str, list[str]] = {}
        for anchor, document, label in zip(mined["anchor"], mined["positive"], mined["label"]):
            if label == 0:
                negatives.setdefault(query_id[anchor], []).append(doc_id[document])
        result["negatives"] = negatives
    out.write_text(json.dumps(result))


def overlap(project: Path, peer: dict[str, list[str]]) -> dict:
    query_ids = artifacts.read(project / "data/ingested/queries", ["query_id"])["query_id"].to_pylist()
    mined = artifacts.read(project / "data/mined/negatives", ["query_id", "doc_id"])
    ours: dict[str, set[str]] = {}
    for q, d in zip(mined["query_id"].to_pylist(), mined["doc_id"].to_pylist()):
        ours.setdefault(q, set()).add(d)
    jaccard = []
    for q in query_ids:
        a, b = ours.get(q, set()), set(peer.get(q, ()))
        jaccard.append(len(a & b) / len(a | b) if a | b else 1.0)
    found = {"queries": len(query_ids), "negatives_pairforge": mined.num_rows}
    found["negatives_peer"] = sum(len(v) for v in peer.values())
    found["mean_jaccard"] = sum(jaccard) / len(jaccard)
    return {**found, "identical_share": sum(j == 1.0 for j in jaccard) / len(jaccard)}


def table(pf: dict, peer: dict, enc: dict, ov: dict) -> str:
    """Rows of (label, pairforge, peer, goal); the ratio is shown where both sides are measured figures."""
    rows = [("wall time, end to end (s)", pf["wall_s"], peer["wall_s"], "<= 1.0")]
    for name, s in pf["stages"].items():
        rows.append((f"  {name} (s) [peak {s['peak_mib']:,.0f} MiB, {s['max_processes']} procs]", s["wall_s"], "", ""))
    rows += [
        ("  peer: imports + read + model load (s)", "", peer["load_s"], ""),
        ("  peer: mine_hard_negatives call (s)", "", peer["mine_s"], ""),
        ("peak memory, process-tree PSS (MiB)", pf["peak_mib"], peer["peak_mib"], ""),
        ("embed texts/s: stage log / encode() only", pf["texts_per_s_logged"], enc["texts_per_s"], ">= 0.95"),
        ("embed texts/s: texts / process wall", pf["texts_per_s_wall"], enc["texts"] / enc["wall_s"], ""),
        ("texts embedded (docs + queries)", pf["texts"], enc["texts"], ""),
        (
            "queries / negatives mined",
            f"{ov['queries']} / {ov['negatives_pairforge']}",
            f"/ {ov['negatives_peer']}",
            "",
        ),
        ("negatives overlap: mean Jaccard per query", f"{ov['mean_jaccard']:.4f}", "", ""),
        ("negatives overlap: queries with identical sets", f"{100 * ov['identical_share']:.1f} %", "", ""),
    ]
    lines = [f"{'':<52}{'pairforge':>12}{'peer':>12}{'ratio':>8}  goal", "-" * 94]
    for label, ours, theirs, goal in rows:
        ratio = f"{ours / theirs:.2f}" if isinstance(ours, float) and isinstance(theirs, float) else ""
        cells = [f"{x:,.1f}" if isinstance(x, float) else str(x) for x in (ours, theirs)]
        lines.append(f"{label:<52}{cells[0]:>12}{cells[1]:>12}{ratio:>8}  {goal}")
    return "\n".join(lines)


def range_limit(value: str) -> int | str | None:
    """--range-limit: a number of candidates, none, or params (argparse passes a string default through this too)."""
    return value if value == "params" else None if value.lower() == "none" else int(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", nargs="?", type=Path, default=REPO.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--max-queries", type=int, default=0, help="first N train queries only (0: all)")
    parser.add_argument("--max-docs", type=int, default=0, help="their positives plus other docs up to N (0: all)")
    parser.add_argument("--num-negatives", type=int, default=3)
    parser.add_argument("--range-max", type=int, default=100)
    parser.add_argument("--relative-margin", type=lambda s: None if s.lower() == "none" else float(s), default=0.05)
    # pairforge grows a query's window past range_max (to mine.range_limit) while it holds fewer than num_negatives
    # valid candidates; the peer does not. none: no growth, the peer's behaviour; default: params.yaml's.
    parser.add_argument("--range-limit", type=range_limit, default="params")
    parser.add_argument(
        "--precision", help="pairforge's embed.precision (default: params.yaml's); fp32 to match the peer"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--workdir", type=Path, help="keep the project and logs here (default: a temp dir)")
    for hidden in ("--worker", "--project", "--model", "--mine", "--out"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        peer_worker(args.worker, Path(args.project), args.model, json.loads(args.mine), Path(args.out))
        return
    mine = {"num_negatives": args.num_negatives, "range_max": args.range_max, "relative_margin": args.relative_margin}
    ours = mine if args.range_limit == "params" else {**mine, "range_limit": args.range_limit}
    load_before = os.getloadavg()[0]  # other work on the machine skews every figure below
    with tempfile.TemporaryDirectory(prefix="mine_vs_st-") as tmp:
        work = args.workdir or Path(tmp)
        source = args.dataset
        if args.max_queries or args.max_docs:
            source = sample_beir(args.dataset, work / "beir-sample", args.max_queries, args.max_docs)
        project = work / "project"
        print(f"pairforge stages in {project} ...", flush=True)
        pf = run_pairforge(source, project, ours, args.precision)
        model = str(models.resolve(yaml.safe_load((project / "params.yaml").read_text())["embed"]["model"]))
        print("peer: encode only ...", flush=True)
        enc = run_peer("encode", project, model, mine)
        print("peer: mine_hard_negatives ...", flush=True)
        peer = run_peer("mine", project, model, mine)
        ov = overlap(project, peer.pop("negatives"))
    print(f"\ndataset {args.dataset} (max_queries={args.max_queries}, max_docs={args.max_docs}); mine {ours}; "
          f"pairforge embedded at {pf['precision']}")  # fmt: skip
    print(f"1-min load average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")
    print(table(pf, peer, enc, ov))
    stage, at_peak = max(pf["stages"].items(), key=lambda item: item[1]["peak_mib"])
    at_peaks = [measure.describe(found["peak_by_process"]) for found in (at_peak, peer)]
    print(f"\nwhere the peaks are (PSS MiB by process): pairforge's {stage} stage: {at_peaks[0]}; peer: {at_peaks[1]}")
    if args.json:
        settings = {**mine, "dataset": str(args.dataset), "max_queries": args.max_queries, "max_docs": args.max_docs}
        ratios = {
            "wall_pairforge_over_peer": pf["wall_s"] / peer["wall_s"],
            "embed_throughput_pairforge_over_peer": pf["texts_per_s_logged"] / enc["texts_per_s"],
            "peak_memory_pairforge_over_peer": pf["peak_mib"] / peer["peak_mib"],
        }
        figures = {"settings": settings, "pairforge": pf, "peer_mine": peer, "peer_encode": enc, "overlap": ov}
        args.json.write_text(json.dumps({**figures, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
