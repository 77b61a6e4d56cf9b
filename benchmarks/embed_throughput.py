"""Embedding throughput: pairforge's Encoder against sentence-transformers' encode, same model, same texts.

    python benchmarks/embed_throughput.py CORPUS_JSONL [--model NAME] [--limit N] [--device auto|cpu|cuda]

Prints texts/s of each, their ratio, and the largest absolute difference between their vectors. Runs wherever
torch runs (CPU here; the GPU path when a CUDA device is visible), without Ray: it measures the actor body.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline import models  # noqa: E402
from pipeline.models.encoder import Encoder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="BEIR corpus.jsonl (title + '. ' + text is embedded)")
    parser.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    with open(args.corpus) as handle:
        docs = [json.loads(line) for line in handle]
    texts = [f"{d['title']}. {d['text']}" if d.get("title") else d["text"] for d in docs]
    texts = texts[: args.limit or None]
    from sentence_transformers import SentenceTransformer

    encoder = Encoder(args.model, batch_size=args.batch_size, device=args.device)
    peer = SentenceTransformer(
        str(models.resolve(args.model)), device=str(encoder.device), model_kwargs={"dtype": torch.float32}
    )
    encoder.encode(texts[:64]), peer.encode(texts[:64])  # warm-up (CUDA kernels, allocator)
    figures = {}
    for name, run in (
        ("pairforge Encoder", lambda: encoder.encode(texts)[0]),
        (
            "sentence-transformers encode",
            lambda: peer.encode(texts, batch_size=args.batch_size, normalize_embeddings=True),
        ),
    ):
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        vectors = run()
        if encoder.device.type == "cuda":
            torch.cuda.synchronize()
        figures[name] = (len(texts) / (time.perf_counter() - started), np.asarray(vectors))
    (ours, a), (theirs, b) = figures.values()
    device = torch.cuda.get_device_name() if encoder.device.type == "cuda" else f"cpu x{torch.get_num_threads()}"
    print(f"{len(texts)} texts on {device}, batch {args.batch_size}")
    for name, (rate, _) in figures.items():
        print(f"  {name:30} {rate:9.1f} texts/s")
    print(f"  ratio pairforge / peer          {ours / theirs:9.3f}")
    print(f"  max |difference| of vectors     {np.abs(a - b).max():9.2e}")


if __name__ == "__main__":
    main()
