"""Embedding: texts in, L2-normalised float32 vectors out, keyed by id, through the embedding cache.

The embed stage streams: it reads the ingested texts in chunks, embeds only those missing from the cache (in the
encoder's actor pool), checkpoints finished vectors as they arrive, and hands back each chunk's vectors in ingest
order. No step holds more than a chunk of texts or vectors, so a re-run after a crash, or after new documents were
added, embeds only what is missing. Queries and documents each get their side's prompt (`prompts`), so where the two
differ, the same text has a vector per side, each in its own cache folder. Precision `auto` is resolved here, once
per stage, before anything is keyed or computed (`resolved`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, models, schema, work
from pairforge.pipeline.models import hardware, st_config
from pairforge.pipeline.params import EmbedParams
from pairforge.pipeline.runtime import Resources
from pairforge.pipeline.schema import InputError
from pairforge.pipeline.shard_cache import EmbeddingCache

log = logging.getLogger("pairforge.embed")

# Texts read, length-sorted and embedded together: bounds the stage's memory. Chunks are cut by position in the
# input (corpus, then queries), not by how many texts are missing, so a resumed run batches the remaining texts
# exactly as the interrupted run would have, and writes the same bytes.
CHUNK_ROWS = 65_536
SOURCES = (("corpus", "doc_id"), ("queries", "query_id"))
SIDES = {"corpus": "document", "queries": "query"}  # whose prompt each source's texts get
# Texts `auto`'s reduced precision is checked on against fp32: the corpus's first, so every run checks the same. Few,
# since a machine's first run pays two encodes of them (bf16 on 768 SciFact texts: cosine 0.99997 to 0.99999).
SAMPLE_TEXTS = 16


def length_sorted(table: pa.Table) -> pa.Table:
    """Longest texts first (ties by id), so that each batch holds texts of similar length and pads little.

    The order is a pure function of the texts, so the embeddings artifact is the same bytes on every run.
    """
    lengths = pc.utf8_length(table.column("text"))
    return (
        table.append_column("_length", lengths)
        .sort_by([("_length", "descending"), ("id", "ascending")])
        .drop(["_length"])
    )


class EmbedBatch:
    """Actor body: loads the encoder once, then turns tables of (id, text, ...) into (id, ..., vector, truncated).

    Columns other than `text` pass through, so callers can carry keys (a text hash, a kind) along.
    """

    def __init__(
        self,
        model: str,
        max_length: int,
        batch_size: int,
        device: str,
        precision: str = "fp32",
        runtime: str = "torch",
        prompt: str = "",
    ):
        # Imported here, in the actor: a stage's own process, whose encoders run in the pool, would otherwise pay
        # torch's ~1.4 s import and ~140 MiB before Ray even starts.
        from pairforge.pipeline.models.encoder import Encoder

        self.encoder = Encoder(model, max_length, batch_size, device, precision, runtime)
        self.prompt = prompt

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors, truncated = self.encoder.encode(batch.column("text").to_pylist(), self.prompt)
        return (
            batch.drop_columns(["text"])
            .append_column("vector", schema.vectors_column(vectors))
            .append_column("truncated", pa.array(truncated))
        )


def prompts(config: EmbedParams) -> dict[str, str]:
    """The prompt put before each "query" and "document" text: `prompt_name`'s for both, else `query_prompt` /
    `document_prompt`, else the model's own for that side (sentence-transformers' encode_query / encode_document)."""
    declared, _ = st_config.prompts(models.resolve(config.model))
    if config.prompt_name is not None:
        if config.prompt_name not in declared:
            raise InputError(
                "params.yaml", None, "embed.prompt_name",
                f"{config.model} has no prompt {config.prompt_name!r}; its prompts: {sorted(declared) or 'none'}",
            )  # fmt: skip
        return dict.fromkeys(st_config.SIDE_NAMES, declared[config.prompt_name])
    given = {"query": config.query_prompt, "document": config.document_prompt}
    return {side: text or st_config.side_prompt(declared, side) for side, text in given.items()}


def precision(config: EmbedParams) -> str:
    """The precision `config`'s encoders run at: `auto` made concrete, as this machine's hardware answers, for the
    device they get: a GPU only where actors are given one (Ray hides the GPUs from the others, and work runs in
    the stage's process only on a machine without any)."""
    return hardware.resolve_precision(config.precision, config.runtime, _device(config))


def _device(config: EmbedParams) -> str:
    """The device kind the pool's encoders get: a GPU only where actors are given one."""
    return config.device if config.device != "auto" else "cuda" if config.gpus_per_actor else "cpu"


class PrecisionCheck(EmbedBatch):
    """Actor body: each text's cosine between its vector in the encoder's precision and in fp32."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        cosine = self.encoder.fp32_cosine(batch.column("text").to_pylist(), self.prompt)
        return batch.append_column("cosine", pa.array(cosine, pa.float32()))


def resolved(config: EmbedParams, sample: list[str]) -> EmbedParams:
    """`config` with its precision as it will run: `auto` made concrete (see `precision`) and, where that is a
    reduced precision, held to cosine `hardware.MIN_COSINE` of fp32 on the `sample` texts (where an encoder of the
    pool would run; the result cached by model, precision and hardware, so a machine checks once), else fp32, with a
    warning. What the stage's manifest, log and cache keys then say."""
    chosen = precision(config)
    if config.precision != "auto" or chosen == "fp32" or not sample:
        return dataclasses.replace(config, precision=chosen)
    check = embedding(dataclasses.replace(config, precision=chosen), prompts(config)["document"])
    settings = {**check.cache.settings, "hardware": hardware.describe(_device(config))}
    check = dataclasses.replace(
        check, worker=PrecisionCheck, columns=("cosine",), inputs=("text",), rows_per_task=len(sample), arrange=None,
        cache=work.Cache(Path(config.cache) / "precision-check", settings, len(sample)),
    )  # fmt: skip
    table = pa.table({"text": pa.array(sample, pa.string())})
    cosine = float(pc.min(work.compute(check, table)[0]["cosine"]).as_py())
    if cosine < hardware.MIN_COSINE:
        log.warning(
            "embed.precision auto: %s moved vectors to cosine %.6f of fp32 on the corpus's first %d texts, below "
            "%s: running fp32 (slower, exact)", chosen, cosine, len(sample), hardware.MIN_COSINE,
        )  # fmt: skip
        chosen = "fp32"
    else:
        log.info("embed.precision auto: %s, cosine to fp32 at least %.6f on %d texts", chosen, cosine, len(sample))
    return dataclasses.replace(config, precision=chosen)


def as_embedded(config: EmbedParams, embeddings: Path) -> EmbedParams:
    """`config` at the precision the embed stage ran (its manifest says), so a later stage's vectors match its."""
    return dataclasses.replace(config, precision=artifacts.manifest(embeddings / "corpus")["precision"])


def sample(ingested: Path) -> list[str]:
    """The texts `resolved` checks a precision on: the corpus's first `SAMPLE_TEXTS`."""
    first = next(artifacts.iter_batches(ingested / "corpus", SAMPLE_TEXTS, ["text"]), None)
    return [] if first is None else first["text"].to_pylist()[:SAMPLE_TEXTS]


def embedding(config: EmbedParams, prompt: str = "") -> work.Work:
    """The encoder `config` names, putting `prompt` before each text, as a declared model call: vectors cached by the
    model's fingerprint, its length limit, precision (resolved) and runtime, the prompt, and the text."""
    folder = models.resolve(config.model)
    settings = {
        "model": models.fingerprint(folder),
        "max_length": config.max_length,
        "precision": precision(config),
        "runtime": config.runtime,
        # Only where there is one: the caches written before prompts existed keep their folders.
        **({"prompt": prompt} if prompt else {}),
    }
    args = {
        "model": str(folder),
        "max_length": config.max_length,
        "batch_size": config.batch_size,
        "device": config.device,
        "precision": settings["precision"],
        "runtime": config.runtime,
        "prompt": prompt,
    }
    return work.Work(
        worker=EmbedBatch,
        args=args,
        resources=Resources(config.actors, config.cpus_per_actor, config.gpus_per_actor),
        rows_per_task=config.batch_size * 2,
        columns=("vector", "truncated"),
        inputs=("id", "text"),
        key=("text",),
        cache=work.Cache(config.cache, settings, config.checkpoint_rows, EmbeddingCache),
        arrange=length_sorted,
    )


def _embedded(config: EmbedParams, by_side: dict[str, str], table: pa.Table, sides: list[str]) -> tuple[pa.Table, int]:
    """`table` (id, text, and columns passed through) with `vector` and `truncated` appended, in its order, each
    text embedded after its side's prompt (`by_side`), and how many were computed now. Sides with the same prompt
    (a model with none) share one call: one actor pool and one cache, as before prompts existed."""
    wanted = [by_side[side] for side in sides]
    distinct = list(dict.fromkeys(wanted)) or [""]
    if len(distinct) == 1:
        return work.compute(embedding(config, distinct[0]), table)
    rows = table.append_column("_row", pa.array(np.arange(table.num_rows)))
    parts, computed = [], 0
    for prompt in distinct:
        part, count = work.compute(embedding(config, prompt), rows.filter(pa.array([p == prompt for p in wanted])))
        parts.append(part)
        computed += count
    return pa.concat_tables(parts).sort_by("_row").drop(["_row"]), computed


def vectors(config: EmbedParams, texts: list[str], sides: list[str]) -> np.ndarray:
    """The embed stage's vectors for these texts (rows in order), each embedded as a "query" or a "document" (its
    side in `sides`: their prompts may differ), from its cache, computing the missing ones."""
    table = pa.table({"id": [str(i) for i in range(len(texts))], "text": pa.array(texts, pa.string())})
    return schema.vectors_matrix(_embedded(config, prompts(config), table, sides)[0]["vector"])


def chunks(ingested: Path, pairs: Path) -> Iterator[pa.Table]:
    """Tables of CHUNK_ROWS texts (source, id, text) over the ingested corpus, then the pairs' queries, in order."""

    def rows() -> Iterator[pa.Table]:
        for name, id_column in SOURCES:
            folder = ingested if name == "corpus" else pairs
            for batch in artifacts.iter_batches(folder / name, CHUNK_ROWS, [id_column, "text"]):
                yield pa.table(
                    {"source": pa.array([name] * batch.num_rows), "id": batch[id_column], "text": batch["text"]}
                )

    buffered: list[pa.Table] = []
    for batch in rows():
        buffered.append(batch)
        while sum(t.num_rows for t in buffered) >= CHUNK_ROWS:
            table = pa.concat_tables(buffered)
            yield table.slice(0, CHUNK_ROWS)
            buffered = [table.slice(CHUNK_ROWS)]
    if sum(t.num_rows for t in buffered):
        yield pa.concat_tables(buffered)


@dataclass(frozen=True)
class EmbeddedChunk:
    """A chunk's vectors per source (id, vector; the model in the schema's metadata), how many texts of each source
    the encoder cut at its token limit, and how many texts it embedded now (the rest came from the cache)."""

    vectors: dict[str, pa.Table]
    truncated: dict[str, int]
    computed: int


def embed_texts(config: EmbedParams, ingested: Path, pairs: Path) -> Iterator[EmbeddedChunk]:
    """Every document's and query's vector, chunk by chunk in order (corpus, then queries)."""
    by_side, fingerprint = prompts(config), models.fingerprint(models.resolve(config.model))
    for chunk in chunks(ingested, pairs):
        out, computed = _embedded(config, by_side, chunk, [SIDES[name] for name in chunk["source"].to_pylist()])
        contract = schema.embeddings(out["vector"].type.list_size, config.model, fingerprint)
        parts = {name: out.filter(pc.equal(out["source"], name)) for name, _ in SOURCES}
        yield EmbeddedChunk(
            {name: part.select(["id", "vector"]).cast(contract) for name, part in parts.items() if part.num_rows},
            {name: int(pc.sum(part["truncated"]).as_py() or 0) for name, part in parts.items()},
            computed,
        )
