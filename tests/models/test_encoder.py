"""The encoder: vectors equal sentence-transformers' encode, under bf16 autocast and ONNX Runtime too; CLS
pooling; texts far over the token limit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from pipeline import models
from pipeline.models.encoder import Encoder
from tests.conftest import MODEL


def test_vectors_equal_sentence_transformers_encode(texts, reference):
    vectors, truncated = Encoder(MODEL).encode(texts)
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 384)
    assert np.abs(vectors - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert 0 < truncated.sum() < len(texts), "long abstracts are cut at the model's limit, claims are not"


def test_bf16_autocast_keeps_cosine_at_least_0_9999_to_fp32(texts, reference):
    # Every fourth text (10 abstracts, 10 claims): bf16 without AMX is emulated on this CPU, slower than fp32.
    texts, reference = texts[::4], reference[::4]
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


def test_a_text_of_a_million_characters_is_truncated_not_a_crash():
    encoder = Encoder(MODEL)
    long = " ".join(f"word{i % 97}" for i in range(200_000))
    vectors, truncated = encoder.encode([long, "short"])
    assert truncated.tolist() == [True, False] and np.isfinite(vectors).all()
    opening, _ = encoder.encode([long[:20_000]])  # the same first 256 tokens: the same vector
    assert np.abs(vectors[0] - opening[0]).max() < 1e-6


def test_a_ten_megabyte_text_costs_no_more_memory_than_its_kept_tokens():
    # Tokenizing the whole of a 10 MB document to keep 256 tokens took 1.5 GB.
    script = f"""
import resource
from pipeline.models.encoder import Encoder
encoder = Encoder({MODEL!r})
encoder.encode(["warm up"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
encoder.encode(["word " * 2_000_000])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    grown_kib = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert grown_kib < 200 * 1024, f"peak memory grew {grown_kib / 1024:.0f} MiB"
