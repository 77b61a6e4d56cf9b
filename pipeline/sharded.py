"""The corpus's index as the index stage builds it and the miners search it: built from the embeddings' Parquet in
chunks (quantisers trained on a sample, vectors added a chunk at a time), cut into shards of at most
`index.shard_rows` vectors, and searched shard by shard with the results merged as one index would rank them.

Memory is bounded by params, not by the corpus: building holds a training sample, a chunk and one shard; a sharded
index is written a shard at a time. A Flat shard holds its vectors (that is what exact search is); an IVF-PQ one
holds `dim / 4` bytes of codes per vector.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pairforge.pipeline import artifacts, index, runtime, schema, work
from pairforge.pipeline.params import IndexParams

log = logging.getLogger("pairforge.index")
CHUNK_ROWS = 65_536  # vectors read from the Parquet at a time (96 MiB at 384 floats)


def chunks(corpus: Path, columns: tuple[str, ...] = ("vector",)) -> Iterator[pa.Table]:
    return artifacts.iter_batches(corpus, CHUNK_ROWS, list(columns))


def shape(corpus: Path) -> tuple[int, int]:
    """(vectors, dimensions) of an embeddings artifact, from its manifest and Parquet schema, reading no vector."""
    vector = pq.read_schema(artifacts.parts(corpus)[0]).field("vector").type
    return artifacts.manifest(corpus)["rows"], vector.list_size


def take(corpus: Path, rows: np.ndarray) -> np.ndarray:
    """The vectors at `rows` (sorted), read by streaming the corpus: a sample without the whole corpus in memory."""
    picked, start = [], 0
    for chunk in chunks(corpus):
        inside = rows[(rows >= start) & (rows < start + chunk.num_rows)] - start
        picked.append(schema.vectors_matrix(chunk["vector"].take(inside)))
        start += chunk.num_rows
    return np.concatenate(picked)


def shard_files(count: int, params: IndexParams) -> list[str]:
    """The index's file names: `index.faiss`, or one `index-NNNNN.faiss` per `shard_rows` vectors."""
    if not params.shard_rows or count <= params.shard_rows:
        return ["index.faiss"]
    return [f"index-{i:05d}.faiss" for i in range(-(-count // params.shard_rows))]


def files(folder: Path) -> list[Path]:
    """The index files the index stage wrote in `folder`, in row order."""
    return [folder / "index.faiss"] if (folder / "index.faiss").exists() else sorted(folder.glob("index-*.faiss"))


def trained(corpus: Path, count: int, dim: int, params: IndexParams) -> tuple[faiss.Index, str]:
    """An empty index of the factory `params` name (or `auto` picks for `count` vectors), its quantisers trained on
    a sample of the corpus; and the factory."""
    factory = index.factory_for(count, dim, params)
    template = index.empty(factory, dim)
    if not template.is_trained:
        rows = index.train_rows(count, factory, params)
        log.info("%s: training on %s of the %s vectors (index.train_size)", factory, f"{len(rows):,}", f"{count:,}")
        index.train(template, take(corpus, rows))
    return template, factory


class ShardWriter:
    """Adds chunks of vectors to copies of a trained, empty index, writing each shard into `folder` as it fills
    and keeping none of them: the stage holds one shard at a time."""

    def __init__(self, template: faiss.Index, count: int, params: IndexParams, folder: Path):
        self.template, self.params, self.folder = template, params, folder
        self.names = shard_files(count, params)
        self.limit = params.shard_rows if len(self.names) > 1 else count
        self.sizes: list[int] = []
        self.current: faiss.Index | None = None

    def add(self, vectors: np.ndarray) -> None:
        while len(vectors):
            if self.current is None:
                self.current = faiss.clone_index(self.template)
            room = self.limit - self.current.ntotal
            self.current.add(np.ascontiguousarray(vectors[:room]))
            vectors = vectors[room:]
            if self.current.ntotal == self.limit:
                self._flush()

    def close(self) -> list[int]:
        """Write the last shard; the vectors each shard holds."""
        if self.current is not None and self.current.ntotal:
            self._flush()
        if not self.sizes:  # an empty corpus: one empty index, as before sharding
            self.current = faiss.clone_index(self.template)
            self._flush()
        return self.sizes

    def _flush(self) -> None:
        index.set_search_params(self.current, self.params)
        index.write(self.current, self.folder / self.names[len(self.sizes)])
        self.sizes.append(self.current.ntotal)
        self.current = None


class ShardBuild:
    """Actor body of `index.build_actors`: one shard from its vectors (a task of `vector` rows), added to a copy of
    the trained, empty index; returned as the shard's bytes for the stage to write."""

    def __init__(self, template: np.ndarray, params: IndexParams):
        self.template, self.params = template, params

    def __call__(self, batch: pa.Table) -> pa.Table:
        shard = faiss.deserialize_index(self.template)
        shard.add(np.ascontiguousarray(schema.vectors_matrix(batch["vector"])))
        index.set_search_params(shard, self.params)
        return pa.table({"shard": pa.array([faiss.serialize_index(shard).tobytes()], pa.large_binary())})


class PooledShardWriter(ShardWriter):
    """A `ShardWriter` whose shards `params.build_actors` Ray actors build side by side: the stage gathers that many
    shards' vectors, hands each actor one, and writes the shards they return, in order. It holds `build_actors`
    shards' vectors at a time, as the actors do."""

    def __init__(self, template: faiss.Index, count: int, params: IndexParams, folder: Path):
        super().__init__(template, count, params, folder)
        built = runtime.share(faiss.serialize_index(template))
        resources = runtime.Resources(params.build_actors, 1, 0)
        self.call = work.Work(ShardBuild, {"template": built, "params": params}, resources, self.limit, keep_pool=True)
        self.pending: list[np.ndarray] = []

    def add(self, vectors: np.ndarray) -> None:
        self.pending.append(vectors)
        if sum(len(v) for v in self.pending) >= self.limit * self.params.build_actors:
            self._build(last=False)

    def close(self) -> list[int]:
        self._build(last=True)
        runtime.release_kept_pools()
        return super().close()  # an empty corpus still gets its one empty index

    def _build(self, last: bool) -> None:
        """Build the gathered whole shards (and, `last`, the rest), keeping a part-filled shard's vectors."""
        gathered = np.concatenate(self.pending) if self.pending else np.empty((0, 0), np.float32)
        take = len(gathered) if last else len(gathered) // self.limit * self.limit
        self.pending = [gathered[take:]] if take < len(gathered) else []
        if not take:
            return
        vectors = pa.table({"vector": schema.vectors_column(gathered[:take])})
        for start, result in zip(range(0, take, self.limit), work.stream(self.call, vectors)):
            (self.folder / self.names[len(self.sizes)]).write_bytes(result["shard"][0].as_py())
            self.sizes.append(min(self.limit, take - start))


def writer(template: faiss.Index, count: int, params: IndexParams, folder: Path) -> ShardWriter:
    """The shard writer the params ask for: Ray actors side by side for a sharded index with `build_actors`."""
    pooled = params.build_actors and len(shard_files(count, params)) > 1
    return (PooledShardWriter if pooled else ShardWriter)(template, count, params, folder)


def merge(found: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top `k` over several shards' (scores, index rows): by score, a tie to the lower row, as a single
    flat index keeps it. Missing results (row -1) rank last."""
    scores = np.concatenate([s for s, _ in found], axis=1)
    rows = np.concatenate([r for _, r in found], axis=1)
    scores = np.where(rows >= 0, scores, -np.inf)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)


class ShardSearch:
    """One shard, searched where it is loaded: in the process of a miner that maps every shard, or as the body of a
    search actor that holds this shard alone (`mine.shard_actors`; `runtime.RemoteShard` sends it the queries).
    `send` and `collect` are the two halves of a search, so a searcher can send to every shard before it waits."""

    def __init__(self, source: str | Path | np.ndarray, gpu: bool = False):
        self.index = index.load(source, gpu)

    def facts(self) -> tuple[int, bool]:
        """(vectors held, whether search is exact)."""
        return self.index.ntotal, isinstance(faiss.downcast_index(self.index), faiss.IndexFlat)

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(vectors, k)

    send = search  # a search in this process is done once it is sent

    @staticmethod
    def collect(sent: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        return sent


class Searcher:
    """The shards of one index, searched as that index: rows count across shards in file order. A source is a
    shard's file or bytes (loaded here) or a shard a search actor holds (`runtime.RemoteShard`)."""

    def __init__(self, sources: list, gpu: bool = False):
        local = (str, Path, np.ndarray)
        self.shards = [ShardSearch(s, gpu) if isinstance(s, local) else s for s in sources]
        facts = [shard.facts() for shard in self.shards]
        sizes = [size for size, _ in facts]
        self.exact = all(exact for _, exact in facts)
        self.offsets = np.cumsum([0, *sizes])[:-1]
        self.sizes, self.ntotal = sizes, int(sum(sizes))

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sent = [shard.send(vectors, min(k, size) or 1) for shard, size in zip(self.shards, self.sizes)]
        found = [
            shard.collect(pending) for shard, pending in zip(self.shards, sent)
        ]  # every shard asked, then waited on
        shifted = [(scores, _shifted(rows, offset)) for (scores, rows), offset in zip(found, self.offsets)]
        return merge(shifted, min(k, self.ntotal))

    def is_exact(self) -> bool:
        return self.exact


def _shifted(rows: np.ndarray, offset: int) -> np.ndarray:
    """A shard's rows as rows of the whole index (FAISS's -1, no result, stays -1)."""
    return np.where(rows >= 0, rows + offset, -1)


def exact(corpus: Path, queries: np.ndarray, k: int) -> np.ndarray:
    """Each query's `k` nearest rows by exact inner product, over the corpus streamed a chunk at a time."""
    best, start = [], 0
    for chunk in chunks(corpus):
        flat = faiss.IndexFlatIP(queries.shape[1])
        flat.add(schema.vectors_matrix(chunk["vector"]))
        scores, rows = flat.search(queries, min(k, flat.ntotal))
        best = [merge([*best, (scores, _shifted(rows, start))], k)]
        start += flat.ntotal
    return best[0][1]


def facts(paths: list[Path], factory: str, seconds: float, corpus: Path, query_vectors, params: IndexParams) -> dict:
    """What the manifest says of the index in `paths`: its factory, size, shards and build time, and for an
    approximate index its recall@10 / @100 against exact search on a seeded sample of `params.recall_queries`
    queries, after its search setting is tuned to `params.target_recall` on that sample (`tune`; the files are
    rewritten with the value chosen, so the miners search as measured here)."""
    searcher = Searcher(paths)
    found = {"factory": factory, "exact": searcher.is_exact(), "vectors": searcher.ntotal}
    found["build_seconds"] = round(seconds, 1)
    if len(searcher.shards) > 1:
        found["shards"] = list(searcher.sizes)
    if params.recall_queries and not searcher.is_exact() and searcher.ntotal and len(query_vectors):
        sample = query_vectors[index.sample_rows(len(query_vectors), params.recall_queries, params.seed)]
        k = min(100, searcher.ntotal)
        truth = exact(corpus, sample, k)
        setting = index.search_setting(searcher.shards[0].index)
        if setting is not None:  # a PQ without IVF has none: measured only
            found["search"] = tune(searcher, setting, sample, truth, params.target_recall)
            if found["search"]["value"] != found["search"]["first"]:
                _rewrite(searcher, paths)
        approximate = searcher.search(sample, k)[1]
        found["recall"] = {f"at_{at}": recall(truth, approximate, min(at, k)) for at in (10, 100)}
        found["recall"]["queries"] = len(sample)
    return found


def _rewrite(searcher: Searcher, paths: list[Path]) -> None:
    """Each shard written again over its file (with the search setting now set on it)."""
    for shard, path in zip(searcher.shards, paths):
        staging = path.with_name(f".{path.name}.tuned")
        index.write(shard.index, staging)
        staging.replace(path)  # the mapped file stays readable until this process lets it go


# Recall@10 a doubled nprobe / efSearch must add to be worth twice the search time.
MIN_RECALL_GAIN = 0.005


def tune(
    searcher: Searcher, setting: tuple[str, int, int], sample: np.ndarray, truth: np.ndarray, target: float
) -> dict:
    """Double the index's search setting (nprobe for IVF, efSearch for HNSW) from the value it was built with while
    recall@10 on `sample` is below `target`, a doubling still adds `MIN_RECALL_GAIN` and the setting stays within
    its limit (nprobe: the index's lists). Returns the setting, the value it starts from and the one kept (set on
    every shard), and recall@10 at each value tried: the table to choose a setting by. `setting`: the index's
    (name, value, limit), as `index.search_setting` reads it."""
    name, first, limit = setting
    value, k = first, min(10, truth.shape[1])
    measured = {value: recall(truth, searcher.search(sample, k)[1], k)}
    while measured[value] < target and value * 2 <= limit:
        for shard in searcher.shards:
            index.set_search_setting(shard.index, name, value * 2)
        measured[value * 2] = recall(truth, searcher.search(sample, k)[1], k)
        if measured[value * 2] - measured[value] < MIN_RECALL_GAIN:
            break
        value *= 2
    for shard in searcher.shards:
        index.set_search_setting(shard.index, name, value)
    if measured[value] < target:
        log.warning(
            "recall@10 %.3f at %s %d, below index.target_recall %.2f: %s", measured[value], name, value, target,
            f"a larger {name} gains too little (the index's codes cap recall: more bytes per vector, a larger PQ or "
            "HNSW / Flat, recall more)" if value * 2 <= limit else f"{name} is at its limit",
        )  # fmt: skip
    recall_at_10 = {str(v): r for v, r in measured.items()}
    return {"setting": name, "first": first, "value": value, "recall_at_10": recall_at_10}


def recall(truth: np.ndarray, approximate: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top `k` rows that the approximate top `k` holds."""
    return round(float(np.mean([len(np.intersect1d(t[:k], a[:k])) / k for t, a in zip(truth, approximate)])), 4)
