"""Transformers text encoder: the one place that loads and runs embedding models.

Prompts, pooling, the modules after pooling (Dense, Normalize) and length limits follow the model's
sentence-transformers config when it has one (`st_config`; so vectors match `SentenceTransformer.encode`), and fall
back to mean pooling, no prompt and the tokenizer's limit otherwise. The forward pass runs in torch, or in ONNX
Runtime on a graph exported from the same transformers model when the encoder starts (about 1 s for MiniLM; 2 s
more for int8), so there is no second set of weights to keep in step.

Precision `auto` picks the fastest setting the hardware at hand runs natively (`hardware.resolve_precision`); the
embed stage holds it to cosine `hardware.MIN_COSINE` of fp32 on a sample (`fp32_cosine`) before using it.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from pairforge.pipeline import models
from pairforge.pipeline.models import st_config
from pairforge.pipeline.models.hardware import resolve_precision


def _max_length(transformer: Path, tokenizer, model_config) -> int:
    limit = st_config.max_seq_length(transformer)
    if limit:
        return int(limit)
    limits = [tokenizer.model_max_length, getattr(model_config, "max_position_embeddings", None)]
    return int(min(x for x in limits if x and x < 1_000_000))


def _head(stack: st_config.Stack, device: torch.device, dim: int) -> tuple[list, int]:
    """The modules after pooling, as functions of the pooled vectors in the model's order, and the dim they give."""
    steps = []
    for kind, path in stack.head:
        if kind == "Normalize":
            steps.append(functools.partial(torch.nn.functional.normalize, p=2, dim=1))
            continue
        # sentence-transformers' own Dense: its config names the activation, its weights' file and any residual,
        # all of which changed between releases. Imported only here: the package takes ~3 s to import.
        try:
            from sentence_transformers.sentence_transformer.modules import Dense
        except ImportError:  # older releases keep it in `models` (pyproject admits 3.3 on)
            from sentence_transformers.models import Dense
        dense = Dense.load(str(path)).to(device).eval()
        steps.append(lambda vectors, dense=dense: dense({"sentence_embedding": vectors})["sentence_embedding"])
        dim = dense.out_features
    return steps, dim


# The autocast dtype of each torch precision (see `hardware`).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# ONNX Runtime: fp32 with all graph optimisations, or int8 weights with dynamic activation quantisation.
ONNX_PRECISIONS = ("fp32", "int8")


def _check(runtime: str, precision: str, device: torch.device) -> None:
    if runtime == "torch":
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r} is not a torch precision; use one of {sorted(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 on CPU")
    elif runtime == "onnx":
        if precision not in ONNX_PRECISIONS:
            raise ValueError(f"precision {precision!r} is not an onnx precision; use one of {list(ONNX_PRECISIONS)}")
        if device.type != "cpu":
            raise ValueError("runtime onnx is the CPU backend; use runtime torch (fp16 / bf16) on a GPU")
    else:
        raise ValueError(f"unknown runtime {runtime!r}; use torch or onnx")


def _onnx_session(model: torch.nn.Module, input_names: list[str], precision: str, threads: int):
    """Export `model` to ONNX (int8: then quantise its weights) and open it in ONNX Runtime."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class LastHiddenState(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(input_names, inputs))).last_hidden_state

    # The example batch is padded (the second row's mask ends in zeros): any branch the tracer records is then the
    # one that applies the padding mask, never a shortcut for unpadded batches.
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    example = tuple(mask if name == "attention_mask" else torch.ones_like(mask) for name in input_names)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*input_names, "last_hidden_state"]}
    with tempfile.TemporaryDirectory(prefix="pairforge-onnx-") as folder:
        path = Path(folder) / "model.onnx"
        # The TorchScript exporter (dynamo=False) exports BERT-style encoders in about a second with no extra
        # dependency; its deprecation and tracer warnings are about its own future, not this graph (the tests
        # compare the session's vectors to torch's, padded batches included).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHiddenState(), example, str(path), input_names=input_names, output_names=["last_hidden_state"],
                dynamic_axes=axes, opset_version=17, dynamo=False,
            )  # fmt: skip
        if precision == "int8":
            # Per-channel int8 weights for the matrix multiplies only: quantising every op (embedding tables too)
            # or per-tensor scales drops MiniLM's cosine to fp32 from ~0.992 to ~0.89 on SciFact abstracts.
            quantized = Path(folder) / "model-int8.onnx"
            quantize_dynamic(path, quantized, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                             per_channel=True)  # fmt: skip
            path = quantized
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The CPUs Ray gave this actor (torch follows OMP_NUM_THREADS), not every core of the node.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class Encoder:
    """Loads a model once; `encode(texts, prompt)` returns L2-normalised float32 vectors, one row per text."""

    def __init__(
        self,
        name: str,
        max_length: int = 0,
        batch_size: int = 32,
        device: str = "auto",
        precision: str = "fp32",
        runtime: str = "torch",
    ):
        # Imported here, not with the module: the embed stage's process imports it to resolve precision `auto`,
        # which needs torch only, and transformers' import costs another ~0.8 s.
        from transformers import AutoModel, AutoTokenizer

        folder = models.resolve(name)
        self.stack = st_config.stack(folder)  # first: a model it cannot run fails before its weights load
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() and runtime == "torch" else "cpu"
        self.device = torch.device(device)
        self.precision = resolve_precision(precision, runtime, self.device.type)
        _check(runtime, self.precision, self.device)
        self.autocast = PRECISIONS.get(self.precision) if runtime == "torch" else None
        self.tokenizer = AutoTokenizer.from_pretrained(self.stack.transformer)
        # float32 whatever the checkpoint's storage dtype: vectors are float32 by contract, and half precision is a
        # speed choice to make explicitly, not one inherited from how the weights were saved.
        self.model = AutoModel.from_pretrained(self.stack.transformer, dtype=torch.float32).to(self.device).eval()
        self.max_length = max_length or _max_length(self.stack.transformer, self.tokenizer, self.model.config)
        self.batch_size = batch_size
        self.head, self.dim = _head(self.stack, self.device, int(self.model.config.hidden_size))
        declared, default = st_config.prompts(folder)
        self.default_prompt = declared.get(default, "")
        self.onnx = None
        if runtime == "onnx":
            returned = self.tokenizer("a")  # the graph's inputs: what this tokenizer gives, in the model's order
            self.input_names = [name for name in self.tokenizer.model_input_names if name in returned]
            self.onnx = _onnx_session(self.model, self.input_names, precision, torch.get_num_threads())
            del self.model  # the session holds its own copy of the weights

    @torch.inference_mode()
    def encode(self, texts: list[str], prompt: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode `prompt + text` for each text, as `SentenceTransformer.encode(texts, prompt=prompt)` does (None:
        the model's default prompt, if it names one), in length-sorted batches, tokenising each text once.

        Returns the vectors in the input order and a mask of the texts cut at `max_length` tokens.
        """
        prompt = self.default_prompt if prompt is None else prompt
        # Only a text's opening can reach `max_length` tokens: tokenizing all of a 10 MB document to keep 256 tokens
        # took 1.5 GB. A token spans 64 characters only when it is a word the tokenizer could not split, so the cut
        # changes what is kept only for a text whose opening is mostly such words.
        cut = [len(text) > self.max_length * 64 for text in texts]
        texts = [prompt + text[: self.max_length * 64] for text in texts]
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        if encoded.encodings:  # fast tokenizers say what truncation cut off
            truncated = np.array([bool(e.overflowing) for e in encoded.encodings], dtype=bool)
        else:
            truncated = np.array([len(ids) >= self.max_length for ids in encoded["input_ids"]], dtype=bool)
        truncated |= np.array(cut, dtype=bool)
        skip = self._prompt_tokens(prompt)
        lengths = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int64, count=len(texts))
        order = np.argsort(-lengths, kind="stable")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        keys = list(encoded.keys())
        for start in range(0, len(texts), self.batch_size):
            rows = order[start : start + self.batch_size]
            batch = self.tokenizer.pad([{k: encoded[k][i] for k in keys} for i in rows], return_tensors="pt")
            batch = batch.to(self.device)
            out[rows] = self._embed(self._hidden(batch), batch["attention_mask"], skip).cpu().numpy()
        return out, truncated

    def fp32_cosine(self, texts: list[str], prompt: str | None = None) -> np.ndarray:
        """Each text's cosine between its vector in this encoder's precision and in fp32: how far autocast moved it
        (all 1.0 with no autocast)."""
        reduced, _ = self.encode(texts, prompt)
        autocast, self.autocast = self.autocast, None
        try:
            exact, _ = self.encode(texts, prompt)
        finally:
            self.autocast = autocast
        return np.sum(reduced * exact, axis=1)

    def _prompt_tokens(self, prompt: str) -> int:
        """How many leading tokens pooling leaves out: the prompt's, with the tokenizer's opening special token,
        where the model's Pooling says `include_prompt: false` (as sentence-transformers counts them)."""
        if self.stack.include_prompt or not prompt:
            return 0
        ids = self.tokenizer(prompt)["input_ids"]
        return len(ids) - int(ids[-1] in self.tokenizer.all_special_ids)

    def _hidden(self, batch) -> torch.Tensor:
        if self.onnx is not None:
            feed = {name: batch[name].numpy() for name in self.input_names}
            return torch.from_numpy(self.onnx.run(None, feed)[0])
        with torch.autocast(self.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            return self.model(**batch).last_hidden_state.float()

    def _embed(self, hidden: torch.Tensor, mask: torch.Tensor, skip: int) -> torch.Tensor:
        """Pool the tokens, run the modules after pooling, and L2-normalise (the contract, whatever they end in)."""
        if skip:  # from each row's first token (after any left padding), as sentence-transformers does
            positions = torch.arange(mask.size(1), device=mask.device)
            mask = mask * (positions >= mask.argmax(dim=1, keepdim=True) + skip)
        rows = torch.arange(hidden.size(0), device=hidden.device)
        if self.stack.pooling == "cls":
            pooled = hidden[rows, mask.argmax(dim=1)]
        elif self.stack.pooling == "lasttoken":
            pooled = hidden[rows, mask.size(1) - 1 - mask.flip(1).argmax(dim=1)]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        for step in self.head:
            pooled = step(pooled)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)
