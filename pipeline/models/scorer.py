"""Cross-encoder scorer: the one place that loads and runs pair classifiers (rerankers, NLI models) as judges.

Plain transformers (AutoModelForSequenceClassification), not sentence-transformers' CrossEncoder, so any HF
sequence-pair classifier loads the same way: ms-marco / BGE rerankers (one logit), NLI models (several labels).

A score is a probability in [0, 1] that the pair is "positive":
- one logit: sigmoid(logit), the reading rerankers trained with BCE (ms-marco MiniLM, BGE) are made for;
- several labels: softmax probability of the positive label. Without an explicit `positive_label`, that is the
  first label whose name (config.id2label, case-insensitive) is in POSITIVE_LABELS, else, for two labels, index 1
  (the LABEL_0 / LABEL_1 convention of binary classifiers); anything else is an error asking for `positive_label`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from pairforge.pipeline import models

# Label names that mean "the second text follows from / answers the first", most specific first.
POSITIVE_LABELS = ("entailment", "entail", "entailed", "relevant", "positive", "yes", "true")

# Past 512 tokens few cross-encoders were trained, and the cost of a pair grows with the square of its length.
LENGTH_CAP = 512


def _max_length(tokenizer, model_config) -> int:
    limits = [tokenizer.model_max_length, getattr(model_config, "max_position_embeddings", None), LENGTH_CAP]
    # Tokenizers without a limit report a huge sentinel (1e30); RoBERTa-style models count 2 offset positions.
    return int(min(x for x in limits if x and x < 1_000_000))


def positive_label_index(id2label: dict, positive_label: str | None = None) -> int:
    """Index of the class whose probability is the score (see the module docstring for the rule)."""
    names = {int(i): str(name).lower() for i, name in id2label.items()}
    if positive_label is not None:
        for i, name in names.items():
            if name == positive_label.lower():
                return i
        raise ValueError(f"positive_label {positive_label!r} is not one of the model's labels {sorted(names.values())}")
    for wanted in POSITIVE_LABELS:
        for i, name in sorted(names.items()):
            if name == wanted:
                return i
    if len(names) == 2:
        return 1
    raise ValueError(
        f"cannot tell which of the labels {sorted(names.values())} means a positive pair; pass positive_label"
    )


class CrossEncoderScorer:
    """Loads a cross-encoder once; `score(queries, documents)` returns one float32 probability per pair."""

    def __init__(
        self,
        name: str,
        max_length: int = 0,
        batch_size: int = 32,
        device: str = "auto",
        positive_label: str | None = None,
    ):
        folder = models.resolve(name)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # float32 whatever the checkpoint's storage dtype (as Encoder): half precision is a speed choice to make
        # explicitly, and fp16 weights run slowly, if at all, on CPU.
        self.model = (
            AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).to(self.device).eval()
        )
        self.max_length = max_length or _max_length(self.tokenizer, self.model.config)
        self.batch_size = batch_size
        self.num_labels = int(self.model.config.num_labels)
        if self.num_labels == 1:
            if positive_label is not None:
                raise ValueError("positive_label applies to models with several labels; this one has one logit")
            self.positive_index = 0
            self.positive_label = None
        else:
            self.positive_index = positive_label_index(self.model.config.id2label, positive_label)
            self.positive_label = str(self.model.config.id2label[self.positive_index])

    def tokenize(self, queries: list[str], documents: list[str]):
        """Token ids of the pairs as the model sees them: longer than max_length, the longer text is cut first."""
        return self.tokenizer(queries, documents, truncation=True, max_length=self.max_length)

    @torch.inference_mode()
    def score(self, queries: list[str], documents: list[str]) -> np.ndarray:
        """Score pairs (queries[i], documents[i]) in length-sorted batches (little padding), tokenising each once.

        Returns the scores in input order.
        """
        if len(queries) != len(documents):
            raise ValueError(f"{len(queries)} queries but {len(documents)} documents: pairs must line up")
        out = np.empty(len(queries), dtype=np.float32)
        if not queries:
            return out
        encoded = self.tokenize(queries, documents)
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(queries))
        order = np.argsort(-lengths, kind="stable")
        keys = list(encoded.keys())
        for start in range(0, len(queries), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer.pad([{k: encoded[k][i] for k in keys} for i in rows], return_tensors="pt")
            logits = self.model(**batch.to(self.device)).logits.float()
            if self.num_labels == 1:
                probabilities = torch.sigmoid(logits[:, 0])
            else:
                probabilities = torch.softmax(logits, dim=-1)[:, self.positive_index]
            out[rows] = probabilities.cpu().numpy()
        return out


class CrossEncoderBatch:
    """Actor body: loads the scorer once, then turns tables of (query, document, keys...) into (keys..., ce_score).

    The texts are dropped from the output: they are most of the bytes, and the caller joins scores back on its keys.
    """

    def __init__(self, model: str, max_length: int, batch_size: int, device: str, positive_label: str | None = None):
        self.scorer = CrossEncoderScorer(
            model, max_length=max_length, batch_size=batch_size, device=device, positive_label=positive_label
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        scores = self.scorer.score(batch.column("query").to_pylist(), batch.column("document").to_pylist())
        keys = batch.drop_columns(["query", "document"])
        return keys.append_column("ce_score", pa.array(scores, type=pa.float32()))
