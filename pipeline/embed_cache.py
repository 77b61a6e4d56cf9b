"""Embedding cache: vectors keyed by encoder settings + text hash, kept in shards that are written atomically.

It does two jobs for the embed stage. Incremental rebuilds: a text already embedded with the same model and
settings is never embedded again, so adding 1% new documents embeds only those. Resume: the stage adds each
finished shard as soon as its vectors arrive, so a run killed at any point loses only the shards in flight.

Layout: `<root>/<key>/shard-<digest>/{hashes,vectors,truncated}.npy`. A shard folder is built under a temporary
name and renamed into place, so a shard is either whole or absent. Vectors are read back memory-mapped: looking
up a chunk of texts touches only their rows, and the index held in memory is 16 bytes per cached text.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa


def text_hashes(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """64-bit content hash per text (blake2b); equal texts share a hash, and so an embedding."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in texts.to_pylist()),
        dtype=np.uint64,
        count=len(texts),
    )


def settings_key(settings: dict) -> str:
    """Cache folder name for everything that changes a vector's value (model fingerprint, length limit, ...)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class EmbeddingCache:
    def __init__(self, root: str | Path, settings: dict):
        self.folder = Path(root) / settings_key(settings)
        self.folder.mkdir(parents=True, exist_ok=True)
        # What these settings were, for a person pruning old cache folders.
        settings_file = self.folder / "settings.json"
        if not settings_file.exists():
            settings_file.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        for stale in self.folder.glob(".tmp-*"):  # shards a killed run was still writing
            shutil.rmtree(stale, ignore_errors=True)
        self._shards: list[Path] = sorted(self.folder.glob("shard-*"))
        self._vectors: dict[int, np.ndarray] = {}
        parts = [np.load(shard / "hashes.npy") for shard in self._shards]
        hashes = np.concatenate(parts) if parts else np.empty(0, np.uint64)
        shard_of = np.repeat(np.arange(len(parts), dtype=np.int32), [len(p) for p in parts])
        row_of = np.concatenate([np.arange(len(p), dtype=np.int32) for p in parts]) if parts else shard_of
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._shard_of, self._row_of = hashes[order], shard_of[order], row_of[order]

    def __len__(self) -> int:
        return len(self._hashes)

    def _find(self, hashes: np.ndarray) -> np.ndarray:
        """Position of each hash in the sorted index, or -1 when it is not cached."""
        at = np.searchsorted(self._hashes, hashes)
        found = at < len(self._hashes)
        found[found] = self._hashes[at[found]] == hashes[found]
        return np.where(found, at, -1)

    def contains(self, hashes: np.ndarray) -> np.ndarray:
        return self._find(hashes) >= 0

    def add(self, hashes: np.ndarray, vectors: np.ndarray, truncated: np.ndarray) -> None:
        """Store one shard; it is durable (and visible to later runs) when this returns."""
        if not len(hashes):
            return
        digest = hashlib.sha256(hashes.tobytes()).hexdigest()[:16]
        final = self.folder / f"shard-{digest}"
        tmp = self.folder / f".tmp-{os.getpid()}-{digest}"
        tmp.mkdir()
        for name, array in (("hashes", hashes), ("vectors", vectors), ("truncated", truncated)):
            with open(tmp / f"{name}.npy", "wb") as handle:
                np.save(handle, np.ascontiguousarray(array))
                handle.flush()
                os.fsync(handle.fileno())
        os.rename(tmp, final)
        shard = len(self._shards)
        self._shards.append(final)
        merged = np.concatenate([self._hashes, hashes])
        order = np.argsort(merged, kind="stable")
        self._hashes = merged[order]
        self._shard_of = np.concatenate([self._shard_of, np.full(len(hashes), shard, np.int32)])[order]
        self._row_of = np.concatenate([self._row_of, np.arange(len(hashes), dtype=np.int32)])[order]

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(vectors, truncated) for hashes that are all cached, in the order given."""
        at = self._find(hashes)
        if (at < 0).any():
            raise KeyError(f"{int((at < 0).sum())} texts are not in the embedding cache {self.folder}")
        shard_of, row_of = self._shard_of[at], self._row_of[at]
        vectors, truncated = None, np.empty(len(hashes), dtype=bool)
        for shard in np.unique(shard_of):
            rows = shard_of == shard
            folder = self._shards[shard]
            if shard not in self._vectors:
                self._vectors[shard] = np.load(folder / "vectors.npy", mmap_mode="r")
            block = self._vectors[shard]
            if vectors is None:
                vectors = np.empty((len(hashes), block.shape[1]), dtype=np.float32)
            vectors[rows] = block[row_of[rows]]
            truncated[rows] = np.load(folder / "truncated.npy")[row_of[rows]]
        if vectors is None:
            raise ValueError("lookup of no texts")
        return vectors, truncated
