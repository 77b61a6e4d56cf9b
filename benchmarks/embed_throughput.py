"""Embedding throughput: pairforge against sentence-transformers' encode, same model, same texts, one run.

    python benchmarks/embed_throughput.py CORPUS_JSONL [--limit N] [--settings torch:fp32,torch:bf16,onnx:fp32]
        [--ray] [--device D]

Prints texts/s and the vectors' agreement with the peer (min cosine, max |difference|) for:
- the peer's `SentenceTransformer.encode` (fp32, torch's default threads);
- pairforge's Encoder in this process at each `runtime:precision` setting (the actor body, no Ray);
- with --ray, the embed actor pool end to end (actor start, model load and ONNX export included) with 1 and 2
  local actors, and on a 2-node loopback Ray cluster (1 CPU per node), at each setting.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import loopback_cluster  # noqa: E402
from pairforge.pipeline import embed, models, runtime, schema  # noqa: E402
from pairforge.pipeline.models.encoder import Encoder  # noqa: E402


def timed(run, *args) -> tuple[float, np.ndarray]:
    """Seconds taken by `run(*args)`, and the vectors it returned."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    vectors = np.asarray(run(*args))
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started, vectors


def pool_run(texts: list[str], args: dict, actors: int) -> np.ndarray:
    table = embed.length_sorted(pa.table({"id": [f"{i:08d}" for i in range(len(texts))], "text": texts}))
    rows = args["batch_size"] * 2
    out = pa.concat_tables(
        runtime.map_batches(table, embed.EmbedBatch, args, runtime.Resources(actors=actors), rows_per_task=rows)
    )
    order = np.argsort(np.array(out["id"].to_pylist()))
    return schema.vectors_matrix(out["vector"])[order]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("corpus", type=Path, help="BEIR corpus.jsonl (title + '. ' + text is embedded)")
    parser.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--settings", default="torch:fp32,torch:bf16,onnx:fp32,onnx:int8")
    parser.add_argument("--ray", action="store_true", help="also time the Ray actor pool and a loopback cluster")
    parser.add_argument("--cluster-part", type=Path, help=argparse.SUPPRESS)  # reference vectors (.npy) -> cluster rows
    args = parser.parse_args()
    with open(args.corpus) as handle:
        docs = [json.loads(line) for line in handle]
    texts = [f"{d['title']}. {d['text']}" if d.get("title") else d["text"] for d in docs][: args.limit or None]
    settings = [tuple(s.split(":")) for s in args.settings.split(",")]
    folder = str(models.resolve(args.model))
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    common = {"model": folder, "max_length": 0, "batch_size": args.batch_size, "device": device}
    if args.cluster_part:
        # Its own process: a process that has shut one Ray down does not reliably join another.
        reference = np.load(args.cluster_part)
        peer_rate = float(args.cluster_part.with_suffix(".rate").read_text())
        with loopback_cluster.LoopbackCluster(nodes=2, cpus_per_node=1) as address:
            os.environ.update({**loopback_cluster.ENV, "RAY_ADDRESS": address})
            for runtime_name, precision in settings:
                worker = {**common, "precision": precision, "runtime": runtime_name}
                seconds, vectors = timed(pool_run, texts, worker, 2)
                row(
                    "Ray pool, 2-node loopback cluster",
                    f"{runtime_name}:{precision}",
                    seconds,
                    vectors,
                    reference,
                    peer_rate,
                )
        return
    from sentence_transformers import SentenceTransformer

    peer = SentenceTransformer(folder, device=device, model_kwargs={"dtype": torch.float32})
    peer.encode(texts[:64])  # warm-up (CUDA kernels, allocator)
    seconds, reference = timed(lambda: peer.encode(texts, batch_size=args.batch_size, normalize_embeddings=True))
    peer_rate = len(texts) / seconds
    where = torch.cuda.get_device_name() if device == "cuda" else f"cpu, {os.cpu_count()} cores"
    print(f"{len(texts)} texts from {args.corpus} on {where}, batch {args.batch_size}")
    print(f"{'':38} {'setting':>10} {'texts/s':>9} {'x peer':>7} {'min cos':>9} {'max |diff|':>10}", flush=True)
    row("sentence-transformers encode (peer)", "torch:fp32", seconds, reference, reference, peer_rate)
    for runtime_name, precision in settings:
        encoder = Encoder(folder, 0, args.batch_size, device, precision, runtime_name)
        encoder.encode(texts[:64])
        seconds, vectors = timed(lambda e: e.encode(texts)[0], encoder)
        row("Encoder in process", f"{runtime_name}:{precision}", seconds, vectors, reference, peer_rate)
    if args.ray:
        # map_batches runs up to PAIRFORGE_IN_PROCESS_ROWS texts in this process, not in a pool: 0, so that the pool
        # rows time a pool at any --limit.
        os.environ["PAIRFORGE_IN_PROCESS_ROWS"] = "0"
        for runtime_name, precision in settings:
            for actors in (1, 2):
                worker = {**common, "precision": precision, "runtime": runtime_name}
                seconds, vectors = timed(pool_run, texts, worker, actors)
                row(
                    f"Ray pool, {actors} local actor(s)",
                    f"{runtime_name}:{precision}",
                    seconds,
                    vectors,
                    reference,
                    peer_rate,
                )
        import ray

        ray.shutdown()
        with tempfile.TemporaryDirectory() as folder_name:
            saved = Path(folder_name) / "reference.npy"
            np.save(saved, reference)
            saved.with_suffix(".rate").write_text(str(peer_rate))
            subprocess.run([sys.executable, *sys.argv, "--cluster-part", str(saved)], check=True)


def row(name: str, setting: str, seconds: float, vectors: np.ndarray, reference: np.ndarray, peer_rate: float) -> None:
    """Print one result line as soon as it is measured."""
    rate, cosine = len(vectors) / seconds, np.sum(vectors * reference, axis=1)
    print(
        f"{name:38} {setting:>10} {rate:9.1f} {rate / peer_rate:7.2f} {cosine.min():9.6f}"
        f" {np.abs(vectors - reference).max():10.2e}",
        flush=True,
    )


if __name__ == "__main__":
    main()
