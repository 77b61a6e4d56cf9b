"""Does pairforge's data train better models? Fine-tune the packaged MiniLM with MultipleNegativesRankingLoss on
SciFact train data built five ways, then score nDCG@10 and Recall@100 on SciFact test (full corpus, exact search).

    python benchmarks/train_eval.py [SCIFACT_DIR] [--seeds 1,2,3] [--settings a,b,c,d,e] [--epochs 1]
        [--batch-size 32] [--learning-rate 5e-5] [--num-negatives 3] [--max-seq-length 128] [--work DIR]
        [--max-steps N]

(a) no hard negatives: (query, positive) pairs, in-batch negatives only;
(b) sentence-transformers' `mine_hard_negatives` with its defaults (base model, triplets);
(c) pairforge: the real pipeline on SciFact train (rule-based edits, default mining and filter params), the mined
    and filtered triplets of the `triplet` export (`negative_kind: mined`), batches in random order;
(d) (c) in topic batches (`export.batching: topic`), and (d-b3) in B3 batches, trained on the export's batches;
(e) (c) plus the counterfactual triplets of the same export: `contrast-triplet` (rule edits of the queries, each
    anchored on the query's positive document, which supports the claim and not its edit), each batch mixing both;
(e-own) (e)'s rows, the counterfactual triplets in batches of their own (a second dataset, sampled in proportion):
    every batch reads one way, query -> document or document -> query, never both;
(f) the `triplet` export of a run that edits the positive documents instead (`generate.source: positives`): (c)'s
    rows plus (query, positive document, its edit) rows, every row read query -> document;
(g) no judged pair at all: SciFact's corpus alone (`ingest.split: null`), queries written for `--generated-docs`
    of its documents by `--query-llm` in `--query-style` and kept by the round trip (`pairs`), then mined and filtered
    as (c) is: the `triplet` export of generated pairs.
Every setting trains with the same loss, optimiser, epochs, batch size and seeds; (a), (b), (c) and (e) use the
sentence-transformers NO_DUPLICATES batch sampler (its advice for in-batch negatives). Evaluation embeds with
pairforge's Encoder at bf16 (cosine >= 0.9999 to fp32; benchmarks/retrieval_quality.py measured nDCG@10 within
0.001), the base model included. Prints mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.retrieval_quality import load_beir, ndcg_recall  # noqa: E402
from pairforge.pipeline import artifacts, models  # noqa: E402

MODEL = "packaged:all-MiniLM-L6-v2"
STAGES = ("ingest", "pairs", "embed", "index", "mine", "generate", "filter", "export")
TEXT = ["anchor", "positive", "negative"]


def stage(project: Path, name: str) -> None:
    done = subprocess.run([sys.executable, "-m", f"pairforge.{name}"], cwd=project, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"stage {name} failed:\n{done.stderr[-3000:]}")


def pairforge_exports(
    scifact: Path, work: Path, settings: list[str], batch_size: int, reuse: bool = False, num_negatives: int = 3
) -> dict[str, Path]:
    """Run the pipeline once on SciFact train; re-run export per batching; returns each setting's export folder."""
    project = work / "project"
    project.mkdir(parents=True, exist_ok=True)
    for part in ("pipeline", "stages"):
        shutil.rmtree(project / part, ignore_errors=True)
        shutil.copytree(REPO / part, project / part)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(source=str(scifact), split="train")
    params["mine"]["num_negatives"] = num_negatives
    params["embed"]["precision"] = "bf16"
    params["generate"]["llm_backend"] = "none"  # rule-based edits: the packaged 135M LLM is too weak to help
    params["export"].update(formats=["triplet", "contrast-triplet"], dev_fraction=0.0, batch_size=batch_size)
    rules, last_edits = params["generate"]["rules"], "not run yet"
    exports = {}
    runs = (("c", "random", None), ("d", "topic", None), ("d-b3", "b3", None), ("e", "random", "queries"),
            ("f", "random", "positives"))  # fmt: skip
    for name, batching, edits in runs:
        if name not in settings:
            continue
        if reuse and (work / f"export-{name}").exists():
            exports[name] = work / f"export-{name}"
            continue
        params["export"]["batching"] = batching
        params["generate"]["rules"] = rules if edits else []  # (c), (d): no counterfactuals in the export at all
        params["generate"]["source"] = edits or "queries"
        (project / "params.yaml").write_text(yaml.safe_dump(params))
        steps = STAGES if last_edits == "not run yet" else ("export",) if last_edits == edits else STAGES[-3:]
        for step in steps:
            stage(project, step)
        last_edits = edits
        exports[name] = work / f"export-{name}"
        shutil.rmtree(exports[name], ignore_errors=True)
        shutil.copytree(project / "data/export", exports[name])
    return exports


def generated_export(scifact: Path, work: Path, args) -> Path:
    """Setting (g): the pipeline on SciFact's corpus with its qrels withheld, on the queries the pairs stage writes
    and keeps; the corpus's vectors come from the main project's embedding cache when it has them."""
    project = work / "project-generated"
    project.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(source=str(scifact), split=None)
    params["pairs"].update(styles=[args.query_style], max_items=args.generated_docs, llm_model=args.query_llm)
    params["mine"]["num_negatives"] = args.num_negatives
    params["embed"].update(precision="bf16", cache=str((work / "project" / "cache" / "embeddings").resolve()))
    params["generate"].update(llm_backend="none", rules=[])
    params["export"].update(formats=["triplet"], dev_fraction=0.0, batch_size=args.batch_size, batching="random")
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    for step in STAGES:
        stage(project, step)
    shutil.rmtree(work / "export-g", ignore_errors=True)
    shutil.copytree(project / "data/export", work / "export-g")
    return work / "export-g"


def peer_triplets(scifact: Path, model, num_negatives: int = 3) -> list[dict]:
    """sentence-transformers' mine_hard_negatives on the train pairs, every other knob at its default."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    return mine_hard_negatives(Dataset.from_list(train_pairs(scifact)), model, num_negatives=num_negatives).to_list()


def train_pairs(scifact: Path) -> list[dict]:
    doc_ids, doc_texts, _, _ = load_beir(scifact, "test")
    text = dict(zip(doc_ids, doc_texts))
    queries = {}
    with open(scifact / "queries.jsonl") as handle:
        for line in handle:
            query = json.loads(line)
            queries[str(query["_id"])] = query["text"]
    pairs = []
    with open(scifact / "qrels" / "train.tsv") as handle:
        next(handle)
        for line in handle:
            query, doc, score = line.rstrip("\n").split("\t")
            if float(score) > 0:
                pairs.append({"anchor": queries[query], "positive": text[doc]})
    return pairs


def train(rows, seed: int, args, out: Path, batch_ids=None) -> Path:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from pairforge.pipeline.training import export_batches

    if isinstance(rows, dict):  # datasets of their own: each batch is drawn from one of them
        from datasets import DatasetDict

        dataset = DatasetDict({name: Dataset.from_list(part) for name, part in rows.items()})
    else:
        dataset = rows if not isinstance(rows, list) else Dataset.from_list(rows)
    model = SentenceTransformer(str(models.resolve(MODEL)), device="cpu")
    model.max_seq_length = args.max_seq_length
    sampler = export_batches(batch_ids) if batch_ids is not None else BatchSamplers.NO_DUPLICATES
    training = SentenceTransformerTrainingArguments(
        output_dir=str(out / "checkpoints"), num_train_epochs=args.epochs, per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate, warmup_ratio=0.1, seed=seed, data_seed=seed, bf16=args.bf16,
        max_steps=args.max_steps,
        use_cpu=True, report_to=[], save_strategy="no", logging_steps=50, batch_sampler=sampler,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=model, args=training, train_dataset=dataset, loss=losses.MultipleNegativesRankingLoss(model)
    )
    trainer.train()
    model.max_seq_length = 256  # evaluate as the base model is evaluated
    model.save(str(out / "model"))
    return out / "model"


def evaluate(folder, corpus) -> tuple[float, float]:
    from pairforge.pipeline.models.encoder import Encoder

    doc_ids, doc_texts, query_texts, relevant = corpus
    encoder = Encoder(str(folder), device="cpu", precision="bf16")
    return ndcg_recall(encoder.encode(doc_texts)[0], encoder.encode(query_texts)[0], doc_ids, relevant)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scifact", type=Path, nargs="?", default=REPO.parent / "shared/datasets/scifact")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--settings", default="a,b,c,d,d-b3,e,e-own,f,g")
    parser.add_argument("--generated-docs", type=int, default=1000, help="(g): documents queries are written for")
    parser.add_argument("--query-style", default="claim", help="(g): pairs.styles, one of them")
    parser.add_argument("--query-llm", default="packaged:SmolLM2-135M-Instruct", help="(g): pairs.llm_model")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--num-negatives", type=int, default=3, help="mined negatives per pair, both miners")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--max-steps", type=int, default=-1, help="end each fine-tune after N steps (-1: --epochs)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pairforge-train-eval"))
    parser.add_argument("--reuse-exports", action="store_true", help="keep the exports a previous run left in --work")
    args = parser.parse_args()
    settings, seeds = args.settings.split(","), [int(s) for s in args.seeds.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    corpus = load_beir(args.scifact, "test")
    started = time.perf_counter()
    results = {"base": [evaluate(models.resolve(MODEL), corpus)]}
    print(f"base model: nDCG@10 {results['base'][0][0]:.4f}, R@100 {results['base'][0][1]:.4f}", flush=True)
    data = {}
    if "a" in settings:
        data["a"] = (train_pairs(args.scifact), None)
    if "b" in settings:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(models.resolve(MODEL)), device="cpu")
        data["b"] = (peer_triplets(args.scifact, model, args.num_negatives), None)
    built = settings + ["e"] * ("e-own" in settings)  # (e-own) trains on (e)'s export
    exports = pairforge_exports(args.scifact, args.work, built, args.batch_size, args.reuse_exports, args.num_negatives)
    if "e-own" in settings:
        exports["e-own"] = exports["e"] if "e" in settings else exports.pop("e")
    if "g" in settings:
        reused = args.reuse_exports and (args.work / "export-g").exists()
        exports["g"] = args.work / "export-g" if reused else generated_export(args.scifact, args.work, args)
    for name, folder in exports.items():
        table = artifacts.read(folder / "triplet")
        kinds = dict(zip(*(column.to_pylist() for column in pc.value_counts(table["negative_kind"]).flatten())))
        print(f"{name}: {table.num_rows} triplets, {kinds}", flush=True)
        batch_ids = table["batch_id"].to_numpy() if name.startswith("d") else None
        rows = table.select(TEXT).to_pylist()
        if name.startswith("e"):  # edits of queries read document -> query, so the triplet export leaves them out
            edits = artifacts.read(folder / "contrast-triplet").select(TEXT).to_pylist()
            rows = {"triplet": rows, "contrast": edits} if name == "e-own" else rows + edits
        data[name] = (rows, batch_ids)
    every = {name: sum(rows.values(), []) if isinstance(rows, dict) else rows for name, (rows, _) in data.items()}
    rows = {name: len(examples) for name, examples in every.items()}
    print(f"training rows: {rows}", flush=True)
    # by query: pairforge joins a title and its text without BEIR's doubled full stop, so positives differ in form
    queries = {p["anchor"] for p in train_pairs(args.scifact)}
    covered = {name: len(queries & {r["anchor"] for r in examples}) for name, examples in every.items()}
    print(f"train queries with at least one row, of {len(queries)}: {covered}", flush=True)
    for done, seed in enumerate(seeds, start=1):  # seeds outermost: every setting has as many seeds at any time
        for name in settings:
            examples, batch_ids = data[name]
            out = args.work / f"run-{name}-{seed}"
            scores = evaluate(train(examples, seed, args, out, batch_ids), corpus)
            results.setdefault(name, []).append(scores)
            print(f"{name} seed {seed}: nDCG@10 {scores[0]:.4f}, R@100 {scores[1]:.4f}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        steps = f" (at most {args.max_steps} steps)" if args.max_steps > 0 else ""
        recipe = (f"{args.epochs} epoch(s){steps}, batch {args.batch_size}, lr {args.learning_rate}, "
                  f"{args.num_negatives} negatives per pair, max_seq_length {args.max_seq_length}")  # fmt: skip
        print(f"\nSciFact test, full corpus ({len(corpus[0])} docs, {len(corpus[2])} queries); seeds {seeds[:done]}; "
              f"{recipe}; {time.perf_counter() - started:.0f} s")  # fmt: skip
        print_table(results, rows)


def print_table(results: dict[str, list[tuple[float, float]]], rows: dict[str, int]) -> None:
    """Mean ± population std over seeds, and each setting's nDCG@10 gain over the peer (b)."""
    print(f"{'setting':8} {'rows':>6} {'nDCG@10':>17} {'R@100':>17} {'vs b':>8}", flush=True)
    peer = np.mean([ndcg for ndcg, _ in results["b"]]) if "b" in results else None
    for name, scores in results.items():
        ndcg, recall = np.array(scores).T
        spread = f"{ndcg.mean():8.4f} ± {ndcg.std():.4f} {recall.mean():8.4f} ± {recall.std():.4f}"
        gain = f"{ndcg.mean() - peer:+8.4f}" if peer is not None and name != "base" else ""
        print(f"{name:8} {rows.get(name, 0):6} {spread} {gain}", flush=True)


if __name__ == "__main__":
    main()
