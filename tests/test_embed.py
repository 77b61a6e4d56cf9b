"""Embedding: vectors equal sentence-transformers' encode, in-process and through the Ray actor pool."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pytest
from sentence_transformers import SentenceTransformer

from pipeline import artifacts, embed, models, runtime, schema
from pipeline.models.encoder import Encoder

MODEL = "packaged:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def texts(scifact) -> list[str]:
    """Real SciFact abstracts (many longer than the model's 256 tokens) and claims (short)."""
    with open(scifact / "corpus.jsonl") as handle:
        docs = [json.loads(next(handle)) for _ in range(40)]
    with open(scifact / "queries.jsonl") as handle:
        claims = [json.loads(next(handle))["text"] for _ in range(40)]
    return [f"{d['title']}. {d['text']}" for d in docs] + claims


@pytest.fixture(scope="module")
def reference(texts) -> np.ndarray:
    model = SentenceTransformer(str(models.resolve(MODEL)), device="cpu")
    return model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)


def test_vectors_equal_sentence_transformers_encode(texts, reference):
    vectors, truncated = Encoder(MODEL).encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    assert np.abs(vectors - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert 0 < truncated.sum() < len(texts), "long abstracts are cut at the model's limit, claims are not"


def test_bf16_autocast_keeps_cosine_at_least_0_9999_to_fp32(texts, reference):
    vectors, _ = Encoder(MODEL, precision="bf16").encode(texts)
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() >= 0.9999
    assert np.abs(vectors - reference).max() > 1e-5, "bf16 really ran: the vectors are not the fp32 ones"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Encoder(MODEL, device="cpu", precision="fp16")


def test_onnx_runtime_matches_fp32_and_int8_stays_close(texts, reference):
    onnx = Encoder(MODEL, runtime="onnx", batch_size=len(texts))  # one batch: claims padded to abstracts' length
    assert onnx.onnx is not None and not hasattr(onnx, "model"), "ONNX Runtime runs the forward pass, not torch"
    vectors, truncated = onnx.encode(texts)
    assert np.sum(vectors * reference, axis=1).min() >= 0.9999
    assert truncated.tolist() == Encoder(MODEL).encode(texts)[1].tolist()
    int8, _ = Encoder(MODEL, runtime="onnx", precision="int8").encode(texts)
    cosine = np.sum(int8 * reference, axis=1)
    # Per-channel int8 matrix multiplies measured 0.992 at worst on SciFact abstracts; all-op per-tensor int8 0.89.
    assert cosine.min() >= 0.98 and cosine.max() < 0.99999, "int8 moves vectors a little, and only a little"
    with pytest.raises(ValueError, match="not an onnx precision"):
        Encoder(MODEL, runtime="onnx", precision="bf16")


def test_vectors_through_the_ray_actor_pool_equal_encode(texts, reference):
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    args = {"model": MODEL, "max_length": 0, "batch_size": 16, "device": "cpu"}
    out = pa.concat_tables(
        runtime.map_batches(table, embed.EmbedBatch, args, runtime.Resources(actors=2), rows_per_task=16)
    )
    assert out["id"].to_pylist() == table["id"].to_pylist(), "results come back in input order"
    assert np.abs(schema.vectors_matrix(out["vector"]) - reference).max() < 1e-5


def pool_actors(name: str) -> dict[str, str]:
    """Pid and state of each actor of class `name` this Ray has started, from its actor table."""
    import ray._private.state as state  # the public state API needs the dashboard, which is off

    return {str(a["Pid"]): a["State"] for a in state.actors().values() if a["ActorClassName"] == name}


def test_a_kept_pool_loads_its_model_once_and_gives_way_to_any_other_pool(texts, reference):
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": texts})
    args = {"model": MODEL, "max_length": 0, "batch_size": 16, "device": "cpu"}

    def run(keep: bool) -> pa.Table:
        return pa.concat_tables(
            runtime.map_batches(table, embed.EmbedBatch, args, runtime.Resources(actors=2), 16, keep=keep)
        )

    first = run(keep=True)
    actors = pool_actors("EmbedBatch")
    assert list(actors.values()) == ["ALIVE", "ALIVE"], actors
    second = run(keep=True)
    assert pool_actors("EmbedBatch") == actors, "the second call ran on the first one's actors: one model load"
    for out in (first, second):
        assert out["id"].to_pylist() == table["id"].to_pylist(), "results come back in input order"
        assert np.abs(schema.vectors_matrix(out["vector"]) - reference).max() < 1e-5
    # Any other pool ends the kept one first: on this 2-CPU machine it would otherwise wait for CPUs forever.
    assert run(keep=False).equals(first)
    assert pool_actors("EmbedBatch") == dict.fromkeys(actors, "DEAD")


def test_cls_pooling_follows_the_model_config(texts, tmp_path):
    folder = tmp_path / "cls-model"
    shutil.copytree(models.resolve(MODEL), folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    reference = SentenceTransformer(str(folder), device="cpu").encode(texts[:8], normalize_embeddings=True)
    vectors, _ = Encoder(str(folder)).encode(texts[:8])
    assert np.abs(vectors - reference).max() < 1e-5
    mean_vectors, _ = Encoder(MODEL).encode(texts[:8])
    assert np.abs(vectors - mean_vectors).max() > 1e-2, "CLS pooling really differs from mean pooling"


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


def test_a_text_of_a_million_characters_is_truncated_not_a_crash():
    vectors, truncated = Encoder(MODEL).encode(["word " * 200_000, "short"])
    assert truncated.tolist() == [True, False] and np.isfinite(vectors).all()
