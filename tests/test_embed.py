"""The embed stage: its artifact carries the model and counts truncated texts; its cache embeds only new texts,
resumes after SIGKILL with the same bytes, and embeds everything again for another model."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pytest
import yaml

from pairforge.pipeline import artifacts, models, schema
from pairforge.pipeline.models.encoder import Encoder
from tests.conftest import MODEL, kill_at_first_checkpoint, project_params, run_stage, write_beir_sample


def test_embeddings_artifact_carries_the_model_and_covers_every_text(pipeline_run):
    corpus = artifacts.read(pipeline_run / "data/ingested/corpus")
    vectors = artifacts.read(pipeline_run / "data/embeddings/corpus")
    assert vectors.schema.field("vector").type == pa.list_(pa.float32(), 384)
    metadata = {k.decode(): v.decode() for k, v in vectors.schema.metadata.items()}
    assert metadata["model"] == MODEL
    assert metadata["fingerprint"] == models.fingerprint(models.resolve(MODEL))
    assert sorted(vectors["id"].to_pylist()) == sorted(corpus["doc_id"].to_pylist())
    assert np.allclose(np.linalg.norm(schema.vectors_matrix(vectors["vector"]), axis=1), 1.0, atol=1e-5)


def test_texts_over_the_token_limit_are_cut_and_counted_in_the_manifest(pipeline_run):
    """Documents longer than the model's limit are truncated, not a crash, and the manifest says how many."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(models.resolve(MODEL)))
    limit = Encoder(MODEL).max_length
    for name, column in (("corpus", "text"), ("queries", "text")):
        texts = artifacts.read(pipeline_run / "data/ingested" / name)[column].to_pylist()
        over = sum(len(ids) > limit for ids in tokenizer(texts)["input_ids"])
        assert artifacts.manifest(pipeline_run / "data/embeddings" / name)["truncated"] == over, name
    assert over == 0 and artifacts.manifest(pipeline_run / "data/embeddings/corpus")["truncated"] > 0


def embed_log(result: subprocess.CompletedProcess) -> tuple[int, int]:
    """(texts embedded, texts already cached) from the embed stage's log."""
    found = re.search(r"embedded (\d+) new texts .*; (\d+) were already in the cache", result.stderr)
    assert found, result.stderr[-2000:]
    return int(found[1]), int(found[2])


def content_hashes(workdir: Path) -> dict[str, str]:
    return {
        name: artifacts.manifest(workdir / "data/embeddings" / name)["content_hash"] for name in ("corpus", "queries")
    }


@pytest.fixture(scope="module")
def project(small_repro: tuple[Path, str], tmp_path_factory) -> Path:
    """A fresh project on the small repro's sample, nothing cached, and tasks of 16 texts, each its own cache
    shard: the first checkpoint comes long before the last, so a kill lands between them."""
    workdir = tmp_path_factory.mktemp("embed-cache")
    params = yaml.safe_load((small_repro[0] / "params.yaml").read_text())
    params["embed"].update(batch_size=8, checkpoint_rows=16)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(workdir, "ingest")
    run_stage(workdir, "pairs")
    return workdir


@pytest.fixture(scope="module")
def uninterrupted(project: Path, tmp_path_factory) -> Path:
    """The embed stage run once, start to end, on a copy of `project`: the bytes every interrupted run must give."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(project, workdir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("cache", "embeddings"))
    run_stage(workdir, "embed")
    return workdir


@pytest.mark.slow
def test_killed_embed_resumes_from_its_checkpoints_and_writes_the_same_bytes(project, uninterrupted):
    kill_at_first_checkpoint(project, "embed", "cache/embeddings/*/shard-*")
    assert not (project / "data/embeddings").exists(), "a killed stage leaves no partial artifact"
    total = uninterrupted.joinpath("data/ingested")
    texts = sum(artifacts.manifest(total / name)["rows"] for name in ("corpus", "queries"))
    embedded, cached = embed_log(run_stage(project, "embed"))
    assert cached >= 16 and embedded >= 16 and embedded + cached == texts, "only texts without a checkpoint again"
    # Same shards of the same length-sorted order, so the same batches: the bytes of an uninterrupted run.
    assert content_hashes(project) == content_hashes(uninterrupted)


@pytest.mark.slow
def test_an_encoder_actor_killed_mid_run_is_restarted_and_its_batch_retried(project, uninterrupted, tmp_path):
    """SIGKILL one of the stage's Ray encoder actors while tasks are in flight: Ray restarts it and retries its
    batch, the stage finishes, and the vectors are the bytes of an uninterrupted run (done in the stage's process)."""
    workdir = tmp_path / "project"
    shutil.copytree(project, workdir, ignore=shutil.ignore_patterns("cache", "embeddings"))
    log = (tmp_path / "embed.log").open("w+")
    ray_pools = {**os.environ, "PAIRFORGE_IN_PROCESS_ROWS": "0"}  # this little work would run in the stage process
    stage = subprocess.Popen(
        [sys.executable, "-m", "pairforge.embed"], cwd=workdir, stdout=log, stderr=log, env=ray_pools
    )
    deadline = time.monotonic() + 600
    while not list(workdir.glob("cache/embeddings/*/shard-*")) and time.monotonic() < deadline:
        assert stage.poll() is None, (tmp_path / "embed.log").read_text()[-3000:]
        time.sleep(0.02)
    actors = [p for p in psutil.Process(stage.pid).children(recursive=True) if "EmbedBatch" in " ".join(p.cmdline())]
    assert actors, "the stage's encoder actors run as its descendants (a local Ray)"
    checkpoints = len(list(workdir.glob("cache/embeddings/*/shard-*")))
    actors[0].kill()  # SIGKILL, mid-stream: a checkpoint is written, later tasks are still running
    stage.wait(timeout=600)
    assert stage.returncode == 0, (tmp_path / "embed.log").read_text()[-3000:]
    assert not actors[0].is_running()
    assert len(list(workdir.glob("cache/embeddings/*/shard-*"))) > checkpoints, "work was left after the kill"
    assert content_hashes(workdir) == content_hashes(uninterrupted)


@pytest.mark.slow
def test_new_documents_are_the_only_texts_embedded_again(project, scifact):
    if not (project / "data/embeddings").exists():
        run_stage(project, "embed")
    before = artifacts.read(project / "data/embeddings/corpus")
    params = yaml.safe_load((project / "params.yaml").read_text())
    source = Path(params["ingest"]["source"])
    grown = project / "grown"
    shutil.copytree(source, grown)
    present = {json.loads(line)["_id"] for line in (source / "corpus.jsonl").read_text().splitlines()}
    added = []
    with open(scifact / "corpus.jsonl") as handle:
        for line in handle:
            if json.loads(line)["_id"] not in present:
                added.append(line)
            if len(added) == max(1, len(present) // 100):  # 1% more documents
                break
    with open(grown / "corpus.jsonl", "a") as handle:
        handle.writelines(added)
    params["ingest"]["source"] = str(grown)
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run_stage(project, "ingest")
    run_stage(project, "pairs")
    embedded, cached = embed_log(run_stage(project, "embed"))
    assert embedded == len(added) and cached >= before.num_rows
    after = artifacts.read(project / "data/embeddings/corpus")
    assert after.num_rows == before.num_rows + len(added)
    old = dict(zip(after["id"].to_pylist(), schema.vectors_matrix(after["vector"])))
    assert all(
        np.array_equal(old[d], v) for d, v in zip(before["id"].to_pylist(), schema.vectors_matrix(before["vector"]))
    )


@pytest.mark.slow
def test_another_model_embeds_everything_again(scifact, tmp_path):
    source = write_beir_sample(scifact, tmp_path / "beir", queries=8, docs=24)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params(source)))
    run_stage(tmp_path, "ingest")
    run_stage(tmp_path, "pairs")
    texts = sum(artifacts.manifest(tmp_path / "data/ingested" / name)["rows"] for name in ("corpus", "queries"))
    assert embed_log(run_stage(tmp_path, "embed")) == (texts, 0)
    assert embed_log(run_stage(tmp_path, "embed")) == (0, texts), "the same model: nothing to embed"
    folder = tmp_path / "cls-model"  # the same weights pooled differently: another model, other vectors
    shutil.copytree(models.resolve("packaged:all-MiniLM-L6-v2"), folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = {**json.loads(pooling.read_text()), "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.write_text(json.dumps(config))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params(source, embed={"model": str(folder)})))
    assert embed_log(run_stage(tmp_path, "embed")) == (texts, 0)
