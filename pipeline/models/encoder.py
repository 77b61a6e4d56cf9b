"""Transformers text encoder: the one place that loads and runs embedding models.

Pooling and length limits follow the model's sentence-transformers config when it has one (so vectors match
`SentenceTransformer.encode`), and fall back to mean pooling and the tokenizer's limit otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from pipeline import models


def _pooling_mode(folder: Path) -> str:
    modules = folder / "modules.json"
    if modules.exists():
        for module in json.loads(modules.read_text()):
            if module["type"].endswith("Pooling"):
                config = json.loads((folder / module["path"] / "config.json").read_text())
                if config.get("pooling_mode_cls_token"):
                    return "cls"
                if config.get("pooling_mode_lasttoken"):
                    return "last"
                return "mean"
    return "mean"


def _max_length(folder: Path, tokenizer, model_config) -> int:
    st_config = folder / "sentence_bert_config.json"
    if st_config.exists():
        limit = json.loads(st_config.read_text()).get("max_seq_length")
        if limit:
            return int(limit)
    limits = [tokenizer.model_max_length, getattr(model_config, "max_position_embeddings", None)]
    return int(min(x for x in limits if x and x < 1_000_000))


# Reduced precision runs the matrix multiplies under autocast (weights stay float32; layer norms, softmax and the
# pooling stay float32), so vectors keep cosine >= 0.9999 to the float32 ones while bf16 GEMMs run about twice as
# fast on CPUs with AVX512-BF16 / AMX and on GPUs. fp16 is a GPU choice: CPUs have no fast fp16 GEMM.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Encoder:
    """Loads a model once; `encode(texts)` returns L2-normalised float32 vectors, one row per text."""

    def __init__(
        self, name: str, max_length: int = 0, batch_size: int = 32, device: str = "auto", precision: str = "fp32"
    ):
        folder = models.resolve(name)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; use one of {sorted(PRECISIONS)}")
        if precision == "fp16" and self.device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 on CPU")
        self.autocast = PRECISIONS[precision]
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # float32 whatever the checkpoint's storage dtype: vectors are float32 by contract, and half precision is a
        # speed choice to make explicitly, not one inherited from how the weights were saved.
        self.model = AutoModel.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        self.pooling = _pooling_mode(folder)
        self.max_length = max_length or _max_length(folder, self.tokenizer, self.model.config)
        self.batch_size = batch_size
        self.dim = int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Encode in length-sorted batches (little padding), tokenising each text once.

        Returns the vectors in the input order and a mask of the texts cut at `max_length` tokens.
        """
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        if encoded.encodings:  # fast tokenizers say what truncation cut off
            truncated = np.array([bool(e.overflowing) for e in encoded.encodings], dtype=bool)
        else:
            truncated = np.array([len(ids) >= self.max_length for ids in encoded["input_ids"]], dtype=bool)
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        keys = list(encoded.keys())
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer.pad([{k: encoded[k][i] for k in keys} for i in rows], return_tensors="pt")
            batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
                hidden = self.model(**batch).last_hidden_state
            out[rows] = self._pool(hidden.float(), batch["attention_mask"]).cpu().numpy()
        return out, truncated

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "last":
            last = mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)
