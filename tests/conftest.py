"""Shared fixtures: the real SciFact data (skipped when ../shared/datasets is absent), SciFact texts with their
reference vectors from sentence-transformers, and a small pipeline run."""

from __future__ import annotations

import collections
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from pairforge.pipeline import artifacts, models

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("PAIRFORGE_DATASETS", REPO.parent / "shared" / "datasets"))
SCIFACT = DATASETS / "scifact"
STAGES = ("ingest", "pairs", "embed", "index", "mine", "generate", "filter", "export")  # in dvc.yaml's order
MODEL = "packaged:all-MiniLM-L6-v2"  # the embed stage's encoder, for its tests and the `reference` vectors


def need(path: Path, what: str) -> None:
    """Skip a test whose dataset is missing here; under CI (where ../shared/datasets is always present) fail
    instead, so that a run without the folder cannot pass with its end-to-end tests quietly skipped."""
    if path.exists():
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{what} not found at {path}, and CI must have it (set PAIRFORGE_DATASETS)")
    pytest.skip(f"{what} not found at {path}")


@pytest.fixture(scope="session")
def scifact() -> Path:
    need(SCIFACT / "corpus.jsonl", "SciFact")
    return SCIFACT


@pytest.fixture(scope="session")
def texts(scifact) -> list[str]:
    """Real SciFact abstracts (many longer than the model's 256 tokens) and claims (short)."""
    with open(scifact / "corpus.jsonl") as handle:
        docs = [json.loads(next(handle)) for _ in range(40)]
    with open(scifact / "queries.jsonl") as handle:
        claims = [json.loads(next(handle))["text"] for _ in range(40)]
    return [f"{d['title']}. {d['text']}" for d in docs] + claims


@pytest.fixture(scope="session")
def reference(texts) -> np.ndarray:
    """sentence-transformers' own vectors for `texts`: what every path of the encoder must give."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(models.resolve(MODEL)), device="cpu")
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def shortened(docs: list[dict], words: int = 48) -> list[dict]:
    """Each document but every tenth cut to its first `words` words: a whole SciFact abstract is over the encoder's
    256 tokens, and costs four times the encoding of a short one, for mechanics that a short one shows as well.
    The tenth stay whole, so that truncation at the model's limit is still met."""
    return [d if i % 10 == 0 else {**d, "text": " ".join(d["text"].split()[:words])} for i, d in enumerate(docs)]


def write_beir_sample(scifact: Path, out: Path, queries: int, docs: int) -> Path:
    """A BEIR folder with the first `queries` train queries, their positives, and other docs up to `docs`, most
    of them `shortened`."""
    rows = train_qrels(scifact)
    query_ids = set(list(dict.fromkeys(r["query-id"] for r in rows))[:queries])
    return write_sample(scifact, out, [r for r in rows if r["query-id"] in query_ids], docs)


def multi_positive_sample(scifact: Path, out: Path, docs: int) -> Path:
    """A BEIR folder of SciFact's train queries with two or more positives, their positives, other documents up to
    `docs`, most of them `shortened`."""
    rows = train_qrels(scifact)
    count = collections.Counter(r["query-id"] for r in rows)
    return write_sample(scifact, out, [r for r in rows if count[r["query-id"]] >= 2], docs)


def train_qrels(scifact: Path) -> list[dict]:
    with open(scifact / "qrels" / "train.tsv") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def write_sample(scifact: Path, out: Path, rows: list[dict], docs: int) -> Path:
    """A BEIR folder of these qrels `rows`: their queries, their positives and other documents up to `docs`."""
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    positive_ids = {r["corpus-id"] for r in rows}
    with open(scifact / "corpus.jsonl") as handle:
        corpus = [json.loads(line) for line in handle]
    kept = [d for d in corpus if d["_id"] in positive_ids]
    kept += [d for d in corpus if d["_id"] not in positive_ids][: max(0, docs - len(kept))]
    (out / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in shortened(kept)))
    wanted = {r["query-id"] for r in rows}
    with open(scifact / "queries.jsonl") as handle:
        all_queries = [json.loads(line) for line in handle]
    (out / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in all_queries if q["_id"] in wanted))
    with open(out / "qrels" / "train.tsv", "w") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        handle.writelines(f"{r['query-id']}\t{r['corpus-id']}\t{r['score']}\n" for r in rows)
    return out


def project_params(source: Path, **overrides: dict) -> dict:
    """The repo's params.yaml pointed at `source`, with per-section overrides."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"]["source"] = str(source)
    for section, values in overrides.items():
        params[section].update(values)
    return params


def set_params(workdir: Path, **sections: dict) -> None:
    """Update sections of a project's params.yaml in place."""
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    for section, values in sections.items():
        params[section].update(values)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))


def run_stage(workdir: Path, name: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one stage entry point for real, in its own process, as DVC would."""
    result = subprocess.run(
        [sys.executable, "-m", f"pairforge.{name}"], cwd=workdir, capture_output=True, text=True, timeout=900
    )
    if check and result.returncode != 0:
        raise AssertionError(f"stage {name} failed:\n{result.stderr[-4000:]}")
    return result


def start_stage_group(workdir: Path, name: str) -> subprocess.Popen:
    """Start stage `name` in its own process group, so that one SIGKILL takes its local Ray workers with it."""
    return subprocess.Popen(
        [sys.executable, "-m", f"pairforge.{name}"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_after(workdir: Path, name: str, delay: float) -> bool:
    """Run stage `name` and SIGKILL its process group after `delay` seconds; False if it had finished first."""
    process = start_stage_group(workdir, name)
    try:
        process.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True


def kill_at_first_checkpoint(workdir: Path, name: str, shards: str) -> None:
    """Start stage `name` and SIGKILL it, with its local Ray, once a cache shard matching `shards` exists."""
    process = start_stage_group(workdir, name)
    deadline = time.monotonic() + 600
    while not list(workdir.glob(shards)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the stage finished before a checkpoint could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="session")
def sample_beir(scifact: Path, tmp_path_factory) -> Path:
    return write_beir_sample(scifact, tmp_path_factory.mktemp("beir"), queries=60, docs=400)


@pytest.fixture(scope="session")
def pipeline_run(sample_beir: Path, tmp_path_factory) -> Path:
    """Every stage on the sample, through the real stage entry points and Ray, as `dvc repro` runs them."""
    workdir = tmp_path_factory.mktemp("project")
    # The local LLM edits 1 query (5 edits, one per control): the mechanics, at a cost CI can afford. fp32, as the
    # peer (sentence-transformers) embeds: tests hold mined negatives and scores to it; `small_repro` runs `auto`.
    params = project_params(sample_beir, embed={"precision": "fp32"}, index={"topics": 8}, mine={"range_max": 30},
                            generate={"llm_max_items": 1})  # fmt: skip
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    for name in STAGES:
        run_stage(workdir, name)
    return workdir


def export_table(workdir: Path, fmt: str) -> pa.Table:
    """Every exported row of a format: the train split, then dev when the export holds one out."""
    folder = workdir / "data/export" / fmt
    splits = [folder, *([folder / "dev"] if (folder / "dev").exists() else [])]
    return pa.concat_tables([artifacts.read(path) for path in splits])


def contrast_rows_by_edit(workdir: Path) -> dict[str, list[dict]]:
    """The exported contrast-triplet rows (train and dev) of each edit, and check that the filter's
    `context_scores` hold one score per such row and none for an edit the export does not use."""
    exported: dict[str, list[dict]] = {}
    for row in export_table(workdir, "contrast-triplet").to_pylist():
        exported.setdefault(row["negative_id"], []).append(row)
    for edit in artifacts.read(workdir / "data/filtered/edits").to_pylist():
        assert len(edit["context_scores"]) == len(exported.get(edit["pair_id"], [])), edit
    return exported


def dvc(repo, *args, env: dict | None = None) -> str:
    env = {**os.environ, **(env or {}), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def dvc_project(repo: Path, params: dict) -> Path:
    """A git + DVC repo holding this project's code, dvc.yaml and the given params."""
    repo.mkdir()
    for part in ("pipeline", "stages", "dvc.yaml"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, repo / part)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    return repo


@pytest.fixture(scope="session")
def small_repro(scifact: Path, tmp_path_factory) -> tuple[Path, str]:
    """A git + DVC project on a small sample (20 queries, 120 docs, rule edits only) after its first real
    `dvc repro`, and what that printed. Tests copy it rather than change it."""
    root = tmp_path_factory.mktemp("small-repro")
    source = write_beir_sample(scifact, root / "beir", queries=20, docs=120)
    params = project_params(source, index={"topics": 4}, mine={"range_max": 20}, generate={"llm_backend": "none"})
    repo = dvc_project(root / "repo", params)
    return repo, dvc(repo, "repro")


@pytest.fixture(scope="session")
def peer_cache(tmp_path_factory) -> Path:
    """sentence-transformers' own embedding cache, so the peer encodes the sample once per test session."""
    return tmp_path_factory.mktemp("peer-cache")


@pytest.fixture(scope="session")
def cross_encoder_dir(tmp_path_factory) -> Path:
    """A real cross-encoder built once per test session: the packaged MiniLM briefly fine-tuned on STS-B."""
    need(DATASETS / "stsbenchmark" / "sts-train.csv", "STS-B")
    from benchmarks.cross_encoder import build

    # 800 pairs at twice the default learning rate: Spearman 0.80 on STS-B dev (2,000 pairs: 0.86) in 40% of the time.
    return build(tmp_path_factory.mktemp("cross-encoder"), DATASETS, pairs=800, learning_rate=1e-4)
