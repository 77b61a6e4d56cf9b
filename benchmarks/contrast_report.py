"""Contrast-pair report: the minimality validator on real SciFact claim pairs, and per edit op how often it
applies, how many edits survive validation, and examples, on SciFact claims and NQ-open questions; plus edit
throughput per backend on this machine.

Usage: python benchmarks/contrast_report.py [--datasets DIR] [--llm-items N] [--examples 5] [--json PATH]
       python benchmarks/contrast_report.py --labels SHEET [--data DIR] [--json PATH]

The second form reads a review sheet labelled by hand (`pairforge review --sheet`, or the labels committed under
`benchmarks/reviews/`) against a run's `filtered/edits` and prints the share of valid edits per op with a 95%
Wilson interval, and overall weighted by how many edits of each op the filter kept.

The fluency bound: the NLL increase under `filter.edit_lm` of the real minimal edits among the claim pairs (both
ways); `filter.edit_max_nll_increase` is set near their 95th percentile.

The validation is the filter stage's (pipeline.contrast.validate with the params.yaml defaults: token-edit bounds,
then the encoder judge with the default encoder). LLM edits come from the default local model (SmolLM2-135M),
directly (`transformers`) and through a local OpenAI-compatible HTTP server in front of the same model (`openai`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pairforge.pipeline import params  # noqa: E402
from pairforge.pipeline.contrast import rules, validate  # noqa: E402


def scifact_claim_pairs(zip_path: Path, seed: int = 0) -> list[dict]:
    """SciFact claims that cite the same abstract with opposite labels (SUPPORT vs CONTRADICT: most are an
    original claim and an annotator's minimal rewrite of it), and as many unrelated pairs (claims citing
    different abstracts), as {"kind", "a", "b"}."""
    claims: dict[str, tuple[str, str, str]] = {}  # id -> (claim, label, cited docs); one row per evidence in CSV
    with zipfile.ZipFile(zip_path) as archive:
        for name in ("claims_train.csv", "claims_validation.csv"):
            for row in csv.DictReader(io.TextIOWrapper(archive.open(name), encoding="utf-8")):
                claims.setdefault(row["id"], (row["claim"].strip(), row["evidence_label"], row["cited_doc_ids"]))
    by_docs: dict[str, dict[str, set[str]]] = {}
    for claim, label, docs in claims.values():
        by_docs.setdefault(docs, {}).setdefault(label, set()).add(claim)
    pairs = [
        {"kind": "support_vs_contradict", "a": a, "b": b}
        for docs in sorted(by_docs)
        for a in sorted(by_docs[docs].get("SUPPORT", ()))
        for b in sorted(by_docs[docs].get("CONTRADICT", ()))
    ]
    rng, groups = random.Random(seed), sorted(by_docs)
    for pair in list(pairs):
        docs = rng.choice(groups)
        other = sorted(c for label_claims in by_docs[docs].values() for c in label_claims)
        if pair["a"] not in other:
            pairs.append({"kind": "unrelated", "a": pair["a"], "b": rng.choice(other)})
    return pairs


def minimality_report(pairs: list[dict], config: params.FilterParams) -> dict:
    out = {}
    for kind in ("support_vs_contradict", "unrelated"):
        group = [p for p in pairs if p["kind"] == kind]
        verdicts = [validate.minimality(p["a"], p["b"], config.edit_max_tokens, config.edit_max_ratio) for p in group]
        edits = [validate.token_edits(p["a"], p["b"]) for p in group]
        out[kind] = {
            "pairs": len(group),
            "accepted": sum(reason is None for reason, _ in verdicts) / len(group),
            "reasons": dict(Counter(reason or "accepted" for reason, _ in verdicts)),
            "token_edits_median": float(np.median(edits)),
        }
    return out


def fluency_bound(pairs: list[dict], lm, config: params.FilterParams) -> dict:
    """The NLL increase (nats, under `edit_lm`) of real minimal edits: the support / contradict claim pairs that
    pass the minimality bounds, read both ways. `filter.edit_max_nll_increase` is set from these quantiles."""
    minimal = [
        p
        for p in pairs
        if p["kind"] == "support_vs_contradict"
        and validate.minimality(p["a"], p["b"], config.edit_max_tokens, config.edit_max_ratio)[0] is None
    ]
    nll_a, nll_b = (np.array(lm.mean_nll([p[side] for p in minimal])) for side in ("a", "b"))
    increase = np.concatenate([nll_b - nll_a, nll_a - nll_b])
    bound = config.edit_max_nll_increase
    return {
        "edits": len(increase),
        "increase": increase.round(4).tolist(),
        "quantiles": {q: round(float(np.quantile(increase, q)), 3) for q in (0.5, 0.8, 0.9, 0.95, 0.99)},
        "bound": bound,
        "within_bound": None if bound is None else float(np.mean(increase <= bound)),
    }


def labelled_validity(labels: Path, data: Path) -> dict:
    """A labelled review sheet (`pairforge review --sheet`) read back against the run's edits."""
    import polars as pl

    from pairforge.pipeline import artifacts
    from pairforge.pipeline.contrast import review

    return review.validity(pl.from_arrow(artifacts.read(data / "filtered/edits")), review.read_labels(labels))


def print_validity(result: dict) -> None:
    print(f"{'op':<28}{'labelled':>9}{'valid':>7}{'share':>8}  95% interval   kept")
    for op, r in result["per_op"].items():
        low, high = r["interval"]
        share = f"{100 * r['share']:>7.0f}%  {100 * low:3.0f}-{100 * high:3.0f} %"
        print(f"{op:<28}{r['labelled']:>9}{r['valid']:>7}{share}  {r['kept']:>6}")
    print(
        f"overall: {result['valid']}/{result['labelled']} valid ({100 * result['share']:.0f} %); weighted by each "
        f"op's kept edits: {100 * result['weighted_share']:.1f} % of {result['kept']} kept edits of these ops"
        + (f"; {result['stale']} labels of edits this run no longer keeps left out" if result["stale"] else "")
    )


def load_texts(datasets: Path) -> dict[str, list[str]]:
    def read(path: Path, field: str) -> list[str]:
        return [json.loads(line)[field] for line in path.read_text().splitlines() if line.strip()]

    return {
        "scifact_claims": read(datasets / "scifact" / "queries.jsonl", "text"),
        "nq_open_questions": read(datasets / "nq_open" / "NQ-open.dev.jsonl", "question"),
    }


def sameness(encoder, original: list[str], edited: list[str]) -> np.ndarray:
    if not original:
        return np.zeros(0, np.float32)
    vectors, _ = encoder.encode(original + edited)
    return np.sum(vectors[: len(original)] * vectors[len(original) :], axis=1)


def validated(edits: list[dict], encoder, config: params.FilterParams) -> list[dict]:
    """The filter stage's checks on {"original", "edited", "preserves_meaning"} edits: adds "reason" (None: kept)."""
    for edit in edits:
        edit["reason"] = validate.minimality(
            edit["original"], edit["edited"], config.edit_max_tokens, config.edit_max_ratio
        )[0]
    live = [e for e in edits if e["reason"] is None]
    scores = sameness(encoder, [e["original"] for e in live], [e["edited"] for e in live])
    preserves = np.array([e["preserves_meaning"] for e in live], bool)
    verdicts = validate.meaning_reasons(
        preserves, scores, config.edit_unchanged_above, config.edit_drifted_below, config.edit_paraphrase_min
    )
    for edit, score, verdict in zip(live, scores, verdicts):
        edit["reason"], edit["sameness"] = verdict, round(float(score), 4)
    return edits


def op_report(texts: list[str], ops: list[str], edits: list[dict], examples: int, seed: int) -> dict:
    report = {}
    for op in ops:
        mine = [e for e in edits if e["op"] == op]
        kept = [e for e in mine if e["reason"] is None]
        rng = random.Random(seed)
        report[op] = {
            "texts": len(texts),
            "applied": len(mine),
            "applied_share": len(mine) / len(texts),
            "accepted": len(kept),
            "acceptance_rate": len(kept) / len(mine) if mine else None,
            "rejections": dict(Counter(e["reason"] for e in mine if e["reason"])),
            "examples": [
                {k: e[k] for k in ("original", "edited", "reason") if k in e}
                for e in rng.sample(mine, min(examples, len(mine)))
            ],
        }
    return report


def rule_edits(texts: list[str], ops: list[str]) -> tuple[list[dict], float]:
    started = time.perf_counter()
    results = rules.apply(texts, ops)
    seconds = time.perf_counter() - started
    edits = [
        {"op": e.op, "original": text, "edited": e.edited, "preserves_meaning": e.preserves_meaning}
        for text, per_op in zip(texts, results)
        for e in per_op
        if e is not None
    ]
    return edits, seconds


def llm_edit_list(llm, texts: list[str], controls: list[str], retries: int, max_new_tokens: int):
    from pairforge.pipeline.contrast.prompts import CONTROLS, llm_edits

    items = [(t, c) for t in texts for c in controls]
    started = time.perf_counter()
    results = llm_edits(llm, items, retries, max_new_tokens)
    seconds = time.perf_counter() - started
    edits = [
        {"op": f"llm_{c}", "original": t, "edited": r.edited, "preserves_meaning": CONTROLS[c][3]}
        for (t, c), r in zip(items, results)
        if r.edited is not None
    ]
    failures = Counter(r.reason for r in results if r.edited is None)
    return edits, seconds, len(items), dict(failures)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets")
    parser.add_argument("--rule-items", type=int, default=500, help="texts per dataset for the rules (0: all)")
    parser.add_argument("--llm-items", type=int, default=6, help="texts per dataset for each LLM backend")
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--labels", type=Path, help="a labelled review sheet: print validity per op, nothing else")
    parser.add_argument("--data", type=Path, default=REPO / "data", help="with --labels: the run's data folder")
    args = parser.parse_args(argv)
    if args.labels:
        result = labelled_validity(args.labels, args.data)
        print_validity(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    import torch

    torch.set_num_threads(1)  # small models on few cores: one thread is several times faster here
    defaults = yaml.safe_load((REPO / "params.yaml").read_text())
    config = params.parse("filter", defaults["filter"])
    gen = params.parse("generate", defaults["generate"])
    from pairforge.pipeline.models.encoder import Encoder
    from pairforge.pipeline.models.llm import OpenAICompatibleLLM, TransformersLLM
    from tests.openai_server import OpenAIServer

    claim_pairs = scifact_claim_pairs(args.datasets / "scifact/raw/scifact_hf_csv.zip")
    report: dict = {
        "minimality": minimality_report(claim_pairs, config),
        "fluency": fluency_bound(claim_pairs, TransformersLLM(config.edit_lm, batch_size=32), config),
    }
    encoder = Encoder(params.parse("embed", defaults["embed"]).model)
    local = TransformersLLM(gen.llm_model, batch_size=gen.batch_size)
    throughput: dict = {}
    for name, texts in load_texts(args.datasets).items():
        sample = random.Random(args.seed).sample(texts, args.rule_items or len(texts))
        edits, seconds = rule_edits(sample, gen.rules)
        throughput.setdefault("rules", []).append(
            {"dataset": name, "texts": len(sample), "edits_per_s": len(edits) / seconds}
        )
        llm_texts = sample[: args.llm_items]
        llm_edits_, seconds, asked, failures = llm_edit_list(
            local, llm_texts, gen.llm_controls, gen.llm_retries, gen.llm_max_new_tokens
        )
        throughput.setdefault("transformers", []).append(
            {"dataset": name, "asked": asked, "edits_per_s": asked / seconds, "failures": failures}
        )
        with OpenAIServer(local) as server:
            client = OpenAICompatibleLLM(base_url=server.base_url, model="local", concurrency=gen.llm_concurrency)
            _, seconds, asked, failures = llm_edit_list(
                client, llm_texts, gen.llm_controls, gen.llm_retries, gen.llm_max_new_tokens
            )
        throughput.setdefault("openai (local server)", []).append(
            {"dataset": name, "asked": asked, "edits_per_s": asked / seconds, "failures": failures}
        )
        all_edits = validated(edits + llm_edits_, encoder, config)
        rule_only = [e for e in all_edits if not e["op"].startswith("llm_")]
        llm_only = [e for e in all_edits if e["op"].startswith("llm_")]
        llm_ops = [f"llm_{c}" for c in gen.llm_controls]
        report[name] = {
            "rules": op_report(sample, gen.rules, rule_only, args.examples, args.seed),
            "llm": op_report(llm_texts, llm_ops, llm_only, args.examples, args.seed),
        }
    report["throughput"] = throughput
    report["throughput"]["vllm"] = "needs a GPU machine with vllm; not measured here"
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def print_report(report: dict) -> None:
    print("Minimality validator on SciFact claim pairs (same cited abstract, SUPPORT vs CONTRADICT; unrelated):")
    for kind, r in report["minimality"].items():
        print(
            f"  {kind:<22} {r['pairs']:>5} pairs  accepted {100 * r['accepted']:5.1f} %  median token edits "
            f"{r['token_edits_median']:.0f}  {r['reasons']}"
        )
    fluency = report["fluency"]
    print(
        f"\nFluency: NLL increase of {fluency['edits']} real minimal edits (the claim pairs within the minimality "
        f"bounds, both ways), quantiles {fluency['quantiles']}; filter.edit_max_nll_increase {fluency['bound']} "
        f"passes {100 * (fluency['within_bound'] or 0):.0f} % of them"
    )
    for dataset in ("scifact_claims", "nq_open_questions"):
        for family in ("rules", "llm"):
            print(f"\n{dataset}, {family}:")
            print(f"  {'op':<28}{'texts':>7}{'applied':>9}{'share':>8}{'accepted':>10}{'rate':>7}  rejections")
            for op, r in report[dataset][family].items():
                rate = "" if r["acceptance_rate"] is None else f"{100 * r['acceptance_rate']:.0f} %"
                print(
                    f"  {op:<28}{r['texts']:>7}{r['applied']:>9}{100 * r['applied_share']:>7.0f}%"
                    f"{r['accepted']:>10}{rate:>7}  {r['rejections']}"
                )
                for ex in r["examples"]:
                    print(f"      {ex['original']!r}\n   -> {ex['edited']!r}  [{ex.get('reason') or 'kept'}]")
    print("\nThroughput (edits/s, this machine):")
    for backend, rows in report["throughput"].items():
        print(f"  {backend}: {rows}")


if __name__ == "__main__":
    main()
