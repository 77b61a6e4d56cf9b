"""Precision `auto`: what it resolves to per runtime and device (this CPU's flags read independently of torch), the
resolved precision in the cache key, the check against fp32 passing on this CPU, cached, and its fallback to fp32
really running when the bound cannot be met."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pairforge.pipeline import embed, params, work
from pairforge.pipeline.models import hardware
from pairforge.pipeline.models.encoder import Encoder
from pairforge.pipeline.models.hardware import MIN_COSINE, resolve_precision
from tests.conftest import MODEL


def test_auto_resolves_per_runtime_and_device():
    # torch's own probe, a second opinion on the kernel's flags that `hardware` reads where it can
    on_cpu = "bf16" if any(torch.cpu.get_capabilities().get(f) for f in ("avx512_bf16", "amx_bf16")) else "fp32"
    # Ampere (compute capability 8) on runs bf16 natively; a stage process that sees no GPU picks fp16, which every
    # CUDA GPU runs.
    on_gpu = "bf16" if torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 8 else "fp16"
    assert resolve_precision("auto", "torch", "cpu") == on_cpu
    assert resolve_precision("auto", "onnx", "cpu") == "fp32", "int8 moves vectors: never picked for you"
    assert resolve_precision("auto", "torch", "cuda") == on_gpu
    for runtime, precision in (("torch", "fp32"), ("torch", "bf16"), ("onnx", "int8")):
        assert resolve_precision(precision, runtime, "cpu") == precision, "a precision asked for is kept"
    # The stage resolves for the device its actors get: a GPU only where they are given one.
    config = params.parse("embed", {})
    assert config.precision == "auto", "the default"
    assert embed.precision(config) == on_cpu
    assert embed.precision(params.parse("embed", {"gpus_per_actor": 1.0})) == on_gpu
    assert embed.precision(params.parse("embed", {"device": "cuda"})) == on_gpu
    assert embed.precision(params.parse("embed", {"runtime": "onnx"})) == "fp32"
    assert embed.resolved(config, []).precision == on_cpu


def test_the_embed_stage_process_resolves_auto_and_keys_its_check_without_importing_torch():
    """The stage's own process, whose encoders run in the pool, need not pay for torch (~1.2 s, ~140 MiB)."""
    code = (
        "import sys\n"
        "from pairforge.pipeline import embed, params\n"
        "from pairforge.pipeline.models import hardware\n"
        "print(embed.precision(params.parse('embed', {})), hardware.describe('cpu'), 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    precision, *_, imported = done.stdout.split()
    assert precision == hardware.resolve_precision("auto", "torch", "cpu") and imported == "False", done.stdout


def test_the_cache_is_keyed_by_the_resolved_precision_and_explicit_keys_stay(tmp_path):
    model = tmp_path / "model"  # a "model" with the same fingerprint on every machine (as tests/test_work.py)
    model.mkdir()
    (model / "w.bin").write_bytes(b"weights")

    def folder(precision: str) -> Path:
        config = params.EmbedParams(model=str(model), cache=str(tmp_path / "cache"), precision=precision)
        return work.open_cache(embed.embedding(config)).folder

    assert folder("fp32").name == "5fc65e4efd4ac65d", "the key fp32 caches had before auto existed"
    resolved = embed.precision(params.EmbedParams())
    assert folder("auto") == folder(resolved)
    assert json.loads((folder("auto") / "settings.json").read_text())["precision"] == resolved


def test_bf16_stays_within_0_9999_of_fp32_on_this_cpu(texts, reference):
    if resolve_precision("auto", "torch", "cpu") != "bf16":
        pytest.skip("this CPU has no bf16 in hardware: auto runs fp32 here")
    sample, reference = texts[::10], reference[::10]  # 4 abstracts, 4 claims
    encoder = Encoder(MODEL, precision="auto")
    assert encoder.precision == "bf16"
    cosine = encoder.fp32_cosine(sample)
    assert cosine.min() >= MIN_COSINE and cosine.min() < 1.0, "bf16 ran, and close enough"
    vectors, _ = encoder.encode(sample)
    assert np.sum(vectors * reference, axis=1).min() >= MIN_COSINE
    assert np.abs(vectors - reference).max() > 1e-5, "still bf16 after the check, not fp32"


def test_auto_is_checked_once_per_machine_and_falls_back_to_fp32_with_a_warning(texts, tmp_path, caplog, monkeypatch):
    if resolve_precision("auto", "torch", "cpu") != "bf16":
        pytest.skip("this CPU has no bf16 in hardware: auto runs fp32 here, with nothing to check")
    sample = texts[::20]
    config = params.EmbedParams(model=MODEL, cache=str(tmp_path / "cache"))  # precision auto
    with caplog.at_level(logging.INFO):
        assert embed.resolved(config, sample).precision == "bf16"
        assert embed.resolved(config, sample).precision == "bf16"
    checks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("PrecisionCheck")]
    assert [m.split(",")[1] for m in checks] == [" 4 computed now", " 0 computed now"], "the second: from the cache"
    caplog.clear()
    monkeypatch.setattr(hardware, "MIN_COSINE", 1.0)  # a bound no reduced precision meets
    with caplog.at_level(logging.WARNING, logger="pairforge.embed"):
        assert embed.resolved(config, sample).precision == "fp32"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith("embed.precision auto: bf16 moved vectors to cosine 0.99") and "running fp32" in warning
    explicit = params.EmbedParams(model=MODEL, cache=str(tmp_path / "cache"), precision="bf16")
    assert embed.resolved(explicit, sample).precision == "bf16", "a precision asked for is the user's choice"
