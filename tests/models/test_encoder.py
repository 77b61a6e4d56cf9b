"""The encoder: vectors equal sentence-transformers' encode, under bf16 autocast and ONNX Runtime too; CLS
pooling; texts far over the token limit; a modern encoder's query / document prompts (from its config or from
params, keying the cache), prompt tokens left out of pooling, Dense and Normalize modules after pooling, and a clear
error for a module it cannot run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize

from pairforge.pipeline import embed, models, params
from pairforge.pipeline.models.encoder import Encoder
from pairforge.pipeline.schema import InputError
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
from pairforge.pipeline.models.encoder import Encoder
encoder = Encoder({MODEL!r})
encoder.encode(["warm up"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
encoder.encode(["word " * 2_000_000])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""
    grown_kib = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    assert grown_kib < 200 * 1024, f"peak memory grew {grown_kib / 1024:.0f} MiB"


PROMPTS = {"query": "query: ", "document": "passage: "}


@pytest.fixture(scope="module")
def prompted(tmp_path_factory) -> Path:
    """The packaged MiniLM as a modern encoder, saved by sentence-transformers itself: after its Normalize, a seeded
    Dense 384 -> 128 and another Normalize, with E5-style query and document prompts in its config."""
    torch.manual_seed(0)
    model = SentenceTransformer(str(models.resolve(MODEL)), device="cpu")
    model.append(Dense(384, 128))
    model.append(Normalize())
    model.prompts = dict(PROMPTS)
    folder = tmp_path_factory.mktemp("prompted") / "model"
    model.save(str(folder))
    return folder


def test_prompts_and_modules_after_pooling_give_sentence_transformers_vectors(prompted, texts):
    sample = texts[::8]  # 5 abstracts, 5 claims
    reference = SentenceTransformer(str(prompted), device="cpu")
    encoder = Encoder(str(prompted))
    assert encoder.dim == 128
    sides = embed.prompts(params.EmbedParams(model=str(prompted)))
    assert sides == PROMPTS, "each side gets the prompt the model's config declares for it"
    vectors = {}
    for side, prompt in sides.items():
        vectors[side], _ = encoder.encode(sample, prompt)
        expected = reference.encode(sample, prompt_name=side, normalize_embeddings=True)
        assert vectors[side].dtype == np.float32 and vectors[side].shape == (len(sample), 128)
        assert np.sum(vectors[side] * expected, axis=1).min() >= 0.9999, side
    # A two-token prompt moves a 256-token abstract a little (cosine ~0.9999 here) and a short claim more.
    same_text = np.sum(vectors["query"] * vectors["document"], axis=1)
    assert same_text.max() < 0.99999, "every text as a query differs from it as a document beyond float noise"
    assert same_text[5:].mean() < 0.99, "claims as queries are clearly not the same claims as documents"


def test_prompt_params_override_the_model_config_and_key_the_cache(prompted, texts, tmp_path):
    model = str(prompted)
    # fp32: the embed stage's vectors are compared with the fp32 encoder's to float noise.
    config = params.EmbedParams(model=model, query_prompt="search: ", cache=str(tmp_path / "cache"), precision="fp32")
    assert embed.prompts(config) == {"query": "search: ", "document": "passage: "}
    named = params.EmbedParams(model=model, prompt_name="query")
    assert embed.prompts(named) == {"query": "query: ", "document": "query: "}, "one named prompt for both sides"
    with pytest.raises(InputError, match=r"'embed\.prompt_name': .* has no prompt 'passage'"):
        embed.prompts(params.EmbedParams(model=model, prompt_name="passage"))
    with pytest.raises(InputError, match=r"'embed\.prompt_name': set it or query_prompt"):
        params.parse("embed", {"prompt_name": "query", "document_prompt": "passage: "})
    # The embed stage's path: each text after its side's prompt, each prompt its own cache folder.
    sample = texts[-3:]
    vectors = embed.vectors(config, sample + sample, ["query"] * 3 + ["document"] * 3)
    encoder = Encoder(model)
    assert np.abs(vectors[:3] - encoder.encode(sample, "search: ")[0]).max() < 1e-5
    assert np.abs(vectors[3:] - encoder.encode(sample, "passage: ")[0]).max() < 1e-5
    folders = sorted((tmp_path / "cache").glob("*/settings.json"))
    assert sorted(json.loads(f.read_text())["prompt"] for f in folders) == ["passage: ", "search: "]


def test_prompt_tokens_stay_out_of_pooling_where_the_model_says(prompted, texts, tmp_path):
    folder = tmp_path / "instructor-style"
    shutil.copytree(prompted, folder)
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "include_prompt": False}))
    sample = texts[-5:]
    reference = SentenceTransformer(str(folder), device="cpu").encode(sample, prompt="query: ")
    vectors, _ = Encoder(str(folder)).encode(sample, "query: ")
    assert np.sum(vectors * reference, axis=1).min() >= 0.9999
    pooled_with_prompt, _ = Encoder(str(prompted)).encode(sample, "query: ")
    assert np.sum(vectors * pooled_with_prompt, axis=1).max() < 0.999, "the prompt's tokens really were left out"


def test_a_module_the_encoder_cannot_run_is_an_error_naming_it(tmp_path):
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_LayerNorm", "type": "sentence_transformers.models.LayerNorm"},
    ]
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"module '2' \(sentence_transformers\.models\.LayerNorm\) is not one"):
        Encoder(str(tmp_path))
    modules[2]["type"] = "pylate.models.Dense"  # PyLate's Dense projects every token, not the pooled vector
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=r"module '2' \(pylate\.models\.Dense\) is not one"):
        Encoder(str(tmp_path))
    (tmp_path / "modules.json").write_text(json.dumps(modules[:2]))
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(ValueError, match=r"pooling \['max'\] is not one the encoder implements"):
        Encoder(str(tmp_path))
