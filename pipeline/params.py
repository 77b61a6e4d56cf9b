"""Typed params per stage, read from params.yaml. Unknown, missing-type or out-of-range keys are errors."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from pairforge.pipeline.schema import InputError
from pairforge.pipeline.vocabulary import LLM_CONTROLS, QUERY_STYLES, RULE_OPS


@dataclass(frozen=True)
class IngestParams:
    # A BEIR folder, a pair file, or for `pairs` a Hugging Face dataset: `hf:<id>`, or a folder that
    # `datasets.load_from_disk` / `load_dataset` reads.
    source: str = "../shared/datasets/scifact"
    # beir: a folder; pairs: a pair file or dataset; corpus: documents alone (text in `corpus_column`), for queries
    # the pairs stage writes.
    format: Literal["beir", "pairs", "corpus"] = "beir"
    # BEIR: the qrels file (qrels/<split>.*), null for the corpus alone; a Hugging Face dataset: the split read.
    split: str | None = "train"
    # A Hugging Face dataset's configuration (its subset, e.g. "triplet"); null for its default.
    subset: str | None = None
    # Unlabelled documents added to the corpus to mine negatives from: a file, or a dataset as `source` may be.
    corpus: str | None = None
    corpus_column: str = "text"
    # Title and text are joined with this separator for embedding; null keeps the title in its own column only.
    title_separator: str | None = ". "
    # Column names of a pair file: anchor -> query text, positive -> document text, optional negative.
    anchor_column: str = "anchor"
    positive_column: str = "positive"
    negative_column: str | None = None
    # Keep only this many queries (with their positives), sampled with `seed`; 0 keeps all.
    max_queries: int = 0
    seed: int = 12345
    # A row that can't be used (missing or mistyped field, malformed line, unknown id in the qrels, ...): fail stops
    # with the file, row and field named; skip leaves the row out and records it in the rejections (`bad_row`).
    on_bad_row: Literal["fail", "skip"] = "fail"

    def check(self) -> None:
        _at_least(self, "max_queries", 0)


@dataclass(frozen=True)
class EmbedParams:
    model: str = "packaged:all-MiniLM-L6-v2"
    batch_size: int = 32
    # Tokens per text; 0 uses the model's own limit (sentence-transformers' max_seq_length when it has one).
    max_length: int = 0
    # Actors in the Ray pool; 0 starts one per `cpus_per_actor` CPUs of the cluster (or one per GPU).
    actors: int = 0
    cpus_per_actor: int = 1
    gpus_per_actor: float = 0.0
    # auto: GPU when the actor sees one, CPU otherwise.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Where the forward pass runs: torch, or onnx (ONNX Runtime on CPU, exported from the same model at start-up).
    runtime: Literal["torch", "onnx"] = "torch"
    # torch: fp32, or bf16 / fp16 (GPU only) autocast for speed (bf16: cosine >= 0.9999 to fp32 on SciFact, about
    # 1.9x on CPU). onnx: fp32, or int8 weights (faster, but vectors move: see the README for its retrieval cost).
    # auto: bf16 where the hardware runs it natively (else fp16 on a GPU, fp32 on a CPU); fp32 for onnx. The embed
    # stage holds a reduced precision to cosine 0.9999 of fp32 on a sample first (cached), else runs fp32, warning.
    precision: Literal["auto", "fp32", "bf16", "fp16", "int8"] = "auto"
    # Text put before each query / corpus document, as sentence-transformers' prompts (e.g. "query: ", "passage: ").
    # "": the model's own for that side (its config's "query"; "document", "passage" or "corpus" prompt), else none.
    query_prompt: str = ""
    document_prompt: str = ""
    # One of the model's named prompts, for queries and documents alike, in place of the two above (null: unused).
    prompt_name: str | None = None
    # Vectors already computed, keyed by model fingerprint + settings + text hash: re-runs embed only new texts.
    cache: str = "cache/embeddings"
    # Vectors per cache shard, written as they arrive: a killed run loses at most about this much work.
    checkpoint_rows: int = 4096

    def check(self) -> None:
        _at_least(self, "batch_size", 1)
        _at_least(self, "checkpoint_rows", 1)
        _at_least(self, "max_length", 0)
        _at_least(self, "actors", 0)
        _at_least(self, "cpus_per_actor", 1)
        _at_least(self, "gpus_per_actor", 0.0)
        allowed = {"torch": ("auto", "fp32", "bf16", "fp16"), "onnx": ("auto", "fp32", "int8")}[self.runtime]
        if self.precision not in allowed:
            raise InputError(
                "params.yaml", None, "embed.precision", f"runtime {self.runtime} takes one of {list(allowed)}"
            )
        if self.runtime == "onnx" and (self.device == "cuda" or self.gpus_per_actor):
            raise InputError("params.yaml", None, "embed.runtime", "onnx runs on CPU; use torch with a GPU")
        if self.prompt_name is not None and (self.query_prompt or self.document_prompt):
            raise InputError(
                "params.yaml", None, "embed.prompt_name", "set it or query_prompt / document_prompt, not both"
            )


@dataclass(frozen=True)
class IndexParams:
    # Any FAISS index factory string: Flat, HNSW32, IVF256,Flat, IVF256,PQ16, ...; or auto (from size and budget).
    factory: str = "Flat"
    # auto: exact search below this many documents; HNSW or IVF-PQ above, within memory_budget_mb.
    exact_below: int = 100_000
    memory_budget_mb: int = 8192
    # Queries sampled to measure an approximate index's recall against exact search (in the manifest); 0: none.
    recall_queries: int = 1000
    # nprobe / efSearch as built; raised (doubling) on that sample until recall@10 reaches target_recall (0: never).
    nprobe: int = 16
    ef_search: int = 128
    target_recall: float = 0.9
    # Vectors used to train IVF / PQ quantisers; 0: 64 per IVF list, at least 65,536 (what a PQ trains on).
    train_size: int = 0
    # Vectors per index file (0: one file): the index stage holds one shard at a time, miners search them in turn.
    shard_rows: int = 0
    # Ray actors that build shards side by side, each adding one shard's vectors (0: the stage adds them itself).
    build_actors: int = 0
    # k-means topics over docs and queries; 0 turns topics off.
    topics: int = 16
    kmeans_iterations: int = 20
    seed: int = 12345

    def check(self) -> None:
        _at_least(self, "nprobe", 1)
        _at_least(self, "ef_search", 1)
        _at_least(self, "exact_below", 0)
        _at_least(self, "memory_budget_mb", 1)
        _at_least(self, "recall_queries", 0)
        _a_share(self, "target_recall")
        _at_least(self, "train_size", 0)
        _at_least(self, "shard_rows", 0)
        _at_least(self, "build_actors", 0)
        _at_least(self, "topics", 0)
        _at_least(self, "kmeans_iterations", 1)


@dataclass(frozen=True)
class MineParams:
    # The knobs of sentence-transformers' mine_hard_negatives, with the same meaning.
    range_min: int = 0
    range_max: int = 100
    # A query short of num_negatives within range_max searches deeper: its window doubles until it has them or
    # reaches this rank (null: the window stays at range_max, as in mine_hard_negatives).
    range_limit: int | None = None
    num_negatives: int = 3
    sampling: Literal["top", "random"] = "top"
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None
    seed: int = 12345
    # Queries per search task (streamed to the actors holding the index). Large: FAISS's exact search costs about
    # as much per call for 256 queries as for 2048 (measured over 100k vectors), so small tasks waste ~90% of it.
    query_batch_size: int = 4096
    # Search actors (0: one per CPU of the cluster, or per GPU share); with gpus_per_actor > 0 each actor moves the
    # index to its GPU when FAISS was built with GPU support (faiss-gpu), and searches on the CPU otherwise.
    actors: int = 0
    gpus_per_actor: float = 0.0
    # Search actors per index shard, each holding that shard alone (mining actors send them the queries and merge
    # their results); 0: every mining actor maps every shard. For an index larger than one machine's memory.
    shard_actors: int = 0

    def check(self) -> None:
        _at_least(self, "actors", 0)
        _at_least(self, "gpus_per_actor", 0.0)
        _at_least(self, "shard_actors", 0)
        _at_least(self, "range_min", 0)
        _at_least(self, "num_negatives", 1)
        _at_least(self, "query_batch_size", 1)
        if self.range_max <= self.range_min:
            raise InputError("params.yaml", None, "mine.range_max", "must be greater than mine.range_min")
        if self.range_limit is not None and self.range_limit < self.range_max:
            raise InputError("params.yaml", None, "mine.range_limit", "must be at least mine.range_max (or null)")
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise InputError("params.yaml", None, "mine.relative_margin", "must be in [0, 1)")


@dataclass(frozen=True)
class LLMWorkParams:
    """The keys of a stage whose work is LLM calls (generate's edits, pairs' queries): the model, its endpoint, its
    retries and its actor pool."""

    llm_backend: Literal["none", "transformers", "openai", "vllm"] = "transformers"
    llm_model: str = "packaged:SmolLM2-135M-Instruct"
    llm_base_url: str | None = None
    llm_api_key_env: str = "OPENAI_API_KEY"
    # Plain http:// is refused to hosts other than this machine (the key and the texts would cross the network in
    # clear) unless this is true.
    llm_allow_http: bool = False
    llm_max_new_tokens: int = 96
    # Asks again (showing the model its reply) when a reply does not fit the JSON schema.
    llm_retries: int = 1
    # openai: requests in flight at once, and each request's timeout (the whole request: reply included). An item
    # the endpoint still fails on after 3 retries is pending, not rejected (the next run asks again); when more
    # than this share of the items asked fail so, the stage fails.
    llm_concurrency: int = 4
    llm_timeout_s: float = 60.0
    llm_max_failure_share: float = 0.1
    # vllm: GPUs per engine (tensor parallel), and further vllm.LLM arguments (max_model_len, dtype, ...). Engines:
    # `actors` (0: as many as the cluster's GPUs hold).
    llm_tensor_parallel_size: int = 1
    llm_engine_options: dict = field(default_factory=dict)
    batch_size: int = 8
    actors: int = 0
    cpus_per_actor: int = 1
    gpus_per_actor: float = 0.0
    checkpoint_rows: int = 64

    def check_llm_work(self, section: str) -> None:
        _at_least(self, "llm_retries", 0)
        for name in ("llm_max_new_tokens", "llm_concurrency", "llm_tensor_parallel_size", "batch_size",
                     "cpus_per_actor", "checkpoint_rows"):  # fmt: skip
            _at_least(self, name, 1)
        _at_least(self, "llm_timeout_s", 0.001)
        _at_least(self, "actors", 0)
        _at_least(self, "gpus_per_actor", 0.0)
        if self.llm_backend == "openai" and not self.llm_base_url:
            raise InputError("params.yaml", None, f"{section}.llm_base_url", "the openai backend needs a base URL")
        _check_llm(section, self)


@dataclass(frozen=True)
class GenerateParams(LLMWorkParams):
    # What to edit: query texts, the queries' positive documents, or the sentences of a file (STS-B / SICK style).
    source: Literal["queries", "positives", "sentences"] = "queries"
    # For source `sentences`: a JSONL / CSV / TSV / Parquet file and the column that holds one sentence.
    sentences_file: str | None = None
    sentence_column: str = "sentence"
    # Source texts edited by the rules, sampled with `seed` (0: all).
    max_items: int = 0
    seed: int = 12345
    # Rule ops (op codes of pipeline/vocabulary.py); [] turns the rules off. The swaps are off by default: read by
    # hand, fewer than half of their edits were valid (README, "Counterfactual contrast pairs").
    rules: list[str] = field(default_factory=lambda: [op for op in RULE_OPS if not op.startswith("swap_")])
    # Texts longer than this many characters are not edited (attempts say `text_too_long`): parsing a 1M-character
    # document exhausts spaCy and the LLM's context, and an edit of it would not be minimal to any reader.
    max_chars: int = 20_000
    # LLM edits (llm_backend none: off) on the first `llm_max_items` of the same sample, one per control code.
    llm_controls: list[str] = field(default_factory=lambda: list(LLM_CONTROLS))
    llm_max_items: int = 4
    # Finished LLM edits, keyed by model + prompt + text: re-runs and resumed runs edit only what is missing.
    cache: str = "cache/generate"

    def check(self) -> None:
        unknown = [op for op in self.rules if op not in RULE_OPS]
        if unknown:
            raise InputError("params.yaml", None, "generate.rules", f"unknown op {unknown}; known: {list(RULE_OPS)}")
        for name in ("max_items", "llm_max_items"):
            _at_least(self, name, 0)
        _at_least(self, "max_chars", 1)
        for control in self.llm_controls:
            if control not in LLM_CONTROLS:
                raise InputError(
                    "params.yaml",
                    None,
                    "generate.llm_controls",
                    f"unknown control {control!r}; known: {sorted(LLM_CONTROLS)}",
                )
        if self.source == "sentences" and not self.sentences_file:
            raise InputError("params.yaml", None, "generate.sentences_file", "source `sentences` needs a file")
        self.check_llm_work("generate")


@dataclass(frozen=True)
class PairsParams(LLMWorkParams):
    # Generated queries (Promptagator / InPars style) for documents that have none: [] turns them off; otherwise
    # each style of `question`, `keywords`, `claim`, `prompt` (the user's own `prompt`, with `{document}`).
    styles: list[str] = field(default_factory=list)
    prompt: str | None = None
    # Up to this many queries per document per style.
    queries_per_document: int = 1
    # Documents written for, sampled from the corpus with `seed` (0: all); documents of the judged pairs are left
    # out unless `include_judged_documents`.
    max_items: int = 0
    seed: int = 12345
    include_judged_documents: bool = False
    # Judged pairs (the ingested ones) shown to the LLM as worked examples, sampled with `seed`, after the built-in
    # one. Off by default: the packaged 135M model repeated an example's query for most documents (13 of 20).
    few_shot: int = 0
    # Characters of a document put in a prompt (its start): a small model's context holds little more.
    max_document_chars: int = 2000
    llm_max_new_tokens: int = 64
    # Round trip: a query is kept only when the encoder (`embed`'s) ranks its document within this many of the
    # whole corpus...
    round_trip_top_k: int = 3
    # ... and fewer than `ambiguous_docs` other documents score within `ambiguous_margin` of its document's score.
    ambiguous_margin: float = 0.01
    ambiguous_docs: int = 3
    # A query that repeats more than this many consecutive words of its document is a copied span, not a query.
    max_copied_words: int = 10
    # ... and one whose longest copied run is at least this share of its own words (a title copied whole: titles
    # are shorter than `max_copied_words`); null: the run's length alone decides.
    max_copied_share: float | None = 0.8
    # Nearly the same as another query of its document (cosine of their vectors at least this): a duplicate.
    duplicate_cosine: float = 0.95
    # Where the filter has a cross-encoder (`filter.cross_encoder`), it must give (query, document) at least this.
    ce_min: float = 0.5
    # Finished LLM queries, keyed by model + prompt + document: re-runs and resumed runs ask only what is missing.
    cache: str = "cache/pairs"

    def check(self) -> None:
        unknown = [style for style in self.styles if style not in QUERY_STYLES]
        if unknown:
            raise InputError("params.yaml", None, "pairs.styles", f"unknown {unknown}; known: {list(QUERY_STYLES)}")
        if "prompt" in self.styles and "{document}" not in (self.prompt or ""):
            raise InputError("params.yaml", None, "pairs.prompt", "style `prompt` needs a prompt with {document}")
        for name in ("max_items", "few_shot", "ambiguous_margin"):
            _at_least(self, name, 0)
        for name in ("queries_per_document", "max_document_chars", "round_trip_top_k", "ambiguous_docs",
                     "max_copied_words"):  # fmt: skip
            _at_least(self, name, 1)
        for name in ("duplicate_cosine", "max_copied_share"):
            if getattr(self, name) is not None and not 0 < getattr(self, name) <= 1:
                raise InputError("params.yaml", None, f"pairs.{name}", "must be in (0, 1]")
        if self.styles and self.llm_backend == "none":
            raise InputError("params.yaml", None, "pairs.llm_backend", "generated queries need an LLM backend")
        self.check_llm_work("pairs")


@dataclass(frozen=True)
class FilterParams:
    # Near-duplicates of a positive (cheap rules, always first): normalised-text equality, word 3-shingle Jaccard,
    # embedding cosine. null turns a rule off.
    duplicate_text: bool = True
    duplicate_jaccard: float | None = 0.8
    duplicate_cosine: float | None = 0.75
    # Reject a candidate c of query q with positive p whose closeness to the pair, (cos(q, c) + cos(p, c)) /
    # (1 + cos(q, p)), is at least this: 1 means as close to the query and its positive together as the positive
    # is. It adapts to each query (a paraphrase pair sets a high bar, a loosely related claim and abstract a low
    # one), so it replaces a margin against the positive's score; null turns it off.
    pair_closeness: float | None = 0.7
    # Where the dataset has enough queries with several judged positives, learn from them the chance that a
    # candidate is an unlabelled positive (`pipeline.filtering.learned`) and reject at or above this chance; the
    # learned rule then replaces `duplicate_cosine` and `pair_closeness`, which decide where it cannot be learned.
    # null (the default): never learned. It finds labelled positives better than the cosine rules but let more
    # unlabelled paraphrases through in a blind read of STS-B: a model fitted to labels also learns their gaps.
    likely_positive_above: float | None = None
    # Cross-encoder judge (any cross-encoder by HF id or path; null: off). Rejects a negative whose score is above
    # `ce_absolute`, or above `ce_relative` x its query's hardest positive's score.
    cross_encoder: str | None = None
    ce_absolute: float | None = 0.9
    ce_relative: float | None = 0.95
    ce_max_length: int = 0
    # LLM judge: "does this passage answer/support this query?" (none: off).
    llm_backend: Literal["none", "transformers", "openai", "vllm"] = "none"
    llm_model: str = "packaged:SmolLM2-135M-Instruct"
    llm_base_url: str | None = None
    llm_api_key_env: str = "OPENAI_API_KEY"
    llm_allow_http: bool = False
    # Reject when the judge's probability of "relevant" is above this.
    llm_threshold: float = 0.5
    # A candidate the judges reject as relevant with at least this confidence from every judge that scored it (the
    # cross-encoder's score, the LLM's P(relevant)) is proposed as an extra positive: data/filtered/promoted, used
    # by the export with `export.promote_false_negatives` (null: none proposed).
    promote_above: float | None = 0.95
    # As in `generate`: openai requests in flight, their timeout and the failure budget (a candidate the endpoint
    # failed on is pending: its query gets no refills this run, and is judged on the next); vllm GPUs per engine
    # and engine arguments.
    llm_concurrency: int = 4
    llm_timeout_s: float = 30.0
    llm_max_failure_share: float = 0.1
    llm_tensor_parallel_size: int = 1
    llm_engine_options: dict = field(default_factory=dict)
    # Calibration per corpus: on the queries with several judged positives (hidden-positive protocol), pick the
    # hardest mine.relative_margin and pair_closeness whose measured false-negative rate is at most this; null:
    # keep the configured values (the rate is measured and reported either way).
    target_fn_rate: float | None = None
    # How the expensive judges combine: sequence (early exit), any, all.
    policy: Literal["sequence", "any", "all"] = "sequence"
    # Replace rejected negatives with the miner's next candidates, at most this many extra per query; null: every
    # candidate mine inspected (its whole window), so that no query is left short while mine found a candidate.
    refill: bool = True
    refill_depth: int | None = None
    # Generated edits (validators): a counterfactual stays within this many token edits and this share of the
    # original's tokens.
    edit_max_tokens: int = 8
    edit_max_ratio: float = 0.5
    # Fluency, Tailor-style: reject an edit whose mean token negative log-likelihood under `edit_lm` is higher than
    # the original's by more than this many nats (null: off). 1.0: the 95th percentile of real minimal edits (the
    # SciFact claim rewrites, benchmarks/contrast_report.py), so 1 in 20 human edits would fail it.
    edit_max_nll_increase: float | None = 1.0
    edit_lm: str = "packaged:SmolLM2-135M-Instruct"
    # Anchored: under `edit_judge`, an edited query must score at least this much lower than its original against
    # each of the query's positives (an edited document, against each of its queries), else `edit_still_supported`.
    # null (the default): off, since with the encoder as judge the drop told which SciFact claims' negations the
    # abstract supports no better than chance (ROC AUC 0.53); set it with a cross-encoder or LLM judge.
    edit_support_min_drop: float | None = None
    # Did the meaning change as intended? encoder: cosine of embed.model vectors; cross_encoder: filter.cross_encoder's
    # score of (original, edited); llm: the LLM judge's P(same meaning); none: no judge. A meaning-changing edit
    # scored at or above `edit_unchanged_above` is `meaning_unchanged` (null: not checked; a small bi-encoder scores
    # real number and antonym changes 0.99+, so this needs a cross-encoder or LLM judge), one below
    # `edit_drifted_below` is `edit_drifted` (null: not checked); a paraphrase below `edit_paraphrase_min` is
    # `meaning_changed`.
    edit_judge: Literal["none", "encoder", "cross_encoder", "llm"] = "encoder"
    edit_unchanged_above: float | None = None
    edit_drifted_below: float | None = 0.5
    edit_paraphrase_min: float = 0.9
    batch_size: int = 32
    actors: int = 0
    cpus_per_actor: int = 1
    gpus_per_actor: float = 0.0
    # Finished judge results (scores, answers, NLLs), keyed by model + settings + texts: re-runs score only new pairs.
    cache: str = "cache/filter"
    checkpoint_rows: int = 256
    # Queries judged together: the stage holds only their candidates and their documents' texts and vectors.
    query_shard: int = 16384

    def check(self) -> None:
        _at_least(self, "query_shard", 1)
        _at_least(self, "llm_concurrency", 1)
        _at_least(self, "llm_tensor_parallel_size", 1)
        _at_least(self, "llm_timeout_s", 0.001)
        _at_least(self, "edit_max_tokens", 1)
        _at_least(self, "edit_max_ratio", 0.0)
        if self.edit_judge == "cross_encoder" and not self.cross_encoder:
            raise InputError("params.yaml", None, "filter.edit_judge", "cross_encoder needs filter.cross_encoder")
        if self.edit_judge == "llm" and self.llm_backend == "none":
            raise InputError("params.yaml", None, "filter.edit_judge", "llm needs filter.llm_backend")
        if self.refill_depth is not None:
            _at_least(self, "refill_depth", 0)
        _at_least(self, "batch_size", 1)
        _at_least(self, "checkpoint_rows", 1)
        _at_least(self, "ce_max_length", 0)
        if self.pair_closeness is not None:
            _at_least(self, "pair_closeness", 0.0)
        _at_least(self, "actors", 0)
        _at_least(self, "cpus_per_actor", 1)
        for name in (
            "duplicate_jaccard",
            "duplicate_cosine",
            "llm_threshold",
            "target_fn_rate",
            "promote_above",
            "likely_positive_above",
        ):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise InputError("params.yaml", None, f"filter.{name}", f"must be in [0, 1], got {value}")
        if self.llm_backend == "openai" and not self.llm_base_url:
            raise InputError("params.yaml", None, "filter.llm_base_url", "the openai backend needs a base URL")
        _check_llm("filter", self)


@dataclass(frozen=True)
class ExportParams:
    formats: list[str] = field(default_factory=lambda: ["triplet", "n-tuple", "labeled-pair", "contrast-triplet"])
    name: str = "pairforge-dataset"
    rows_per_part: int = 100_000
    seed: int = 12345
    # Share of each (query, positive) pair's negatives that are counterfactual edits of the pair, in `mixed`.
    counterfactual_share: float = 0.25
    # Queries held out for dev (whole groups of queries sharing a positive); 0 writes train only.
    dev_fraction: float = 0.0
    # How rows are grouped into training batches (a `batch_id` column, rows written batch by batch): random,
    # topic (TAS: one query cluster per batch), b3 (METIS communities of the teacher's rank graph), or none.
    batching: Literal["none", "random", "topic", "b3"] = "topic"
    batch_size: int = 32
    # b3: a query links to the queries whose positives the teacher ranks in [b3_skip, b3_skip + b3_window) for it
    # (the top b3_skip ranks are left out as likely false negatives); batches bundle this many communities.
    b3_skip: int = 3
    b3_window: int = 20
    b3_communities_per_batch: int = 4
    # The filter's proposed extra positives (data/filtered/promoted: candidates its judges found relevant with
    # high confidence) join the positives; the card counts them either way.
    promote_false_negatives: bool = False
    # The card's `license` (a Hugging Face license id: cc-by-4.0, apache-2.0, other, ...) and `language` (ISO 639
    # codes, one or a list). The export derives from the source's texts, so it carries the source's license: set it
    # from the source's terms; unknown says nobody stated them.
    license: str = "unknown"
    language: str | list[str] = "en"

    def check(self) -> None:
        _at_least(self, "rows_per_part", 1)
        _at_least(self, "batch_size", 2)
        _at_least(self, "b3_skip", 0)
        _at_least(self, "b3_window", 1)
        _at_least(self, "b3_communities_per_batch", 1)
        _a_share(self, "counterfactual_share")
        _a_share(self, "dev_fraction")
        known = {"triplet", "n-tuple", "n-tuple-scores", "labeled-pair", "labeled-list", "contrast-triplet", "mixed"}
        for fmt in self.formats:
            if fmt not in known:
                raise InputError(
                    "params.yaml", None, "export.formats", f"unknown format {fmt!r}; known: {sorted(known)}"
                )
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", self.license):
            raise InputError(
                "params.yaml", None, "export.license", f"expected a license id (cc-by-4.0), got {self.license!r}"
            )
        for code in [self.language] if isinstance(self.language, str) else self.language:
            if not re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", code):
                raise InputError(
                    "params.yaml", None, "export.language", f"expected ISO 639 codes (en, pt-BR), got {code!r}"
                )


SECTIONS = {
    "ingest": IngestParams,
    "pairs": PairsParams,
    "embed": EmbedParams,
    "index": IndexParams,
    "mine": MineParams,
    "generate": GenerateParams,
    "filter": FilterParams,
    "export": ExportParams,
}


def _check_llm(section: str, config: LLMWorkParams | FilterParams) -> None:
    """A failure budget that is a share, and a base URL that keeps its secrets: no credentials inside it (they would
    reach the manifest, logs and the card; the key belongs in the environment variable `llm_api_key_env` names), no
    plain http beyond this machine."""
    if not 0 <= config.llm_max_failure_share <= 1:
        share = config.llm_max_failure_share
        raise InputError("params.yaml", None, f"{section}.llm_max_failure_share", f"must be in [0, 1], got {share}")
    url, allow_http = config.llm_base_url, config.llm_allow_http
    if url is None:
        return
    key = f"{section}.llm_base_url"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("params.yaml", None, key, "must be an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise InputError(
            "params.yaml", None, key,
            f"holds credentials; remove them and set the key in the variable {section}.llm_api_key_env names",
        )  # fmt: skip
    loopback = parts.hostname == "localhost" or _is_loopback(parts.hostname)
    if parts.scheme == "http" and not loopback and not allow_http:
        raise InputError(
            "params.yaml", None, key,
            f"plain http to {parts.hostname} sends the key and the texts in clear; use https, or set "
            f"{section}.llm_allow_http: true",
        )  # fmt: skip


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _at_least(params: object, name: str, low: float) -> None:
    value = getattr(params, name)
    if value < low:
        raise InputError("params.yaml", None, _key(params, name), f"must be >= {low}, got {value}")


def _a_share(params: object, name: str) -> None:
    value = getattr(params, name)
    if not 0 <= value <= 1:
        raise InputError("params.yaml", None, _key(params, name), f"must be in [0, 1], got {value}")


def _key(params: object, name: str) -> str:
    """`section.name` of a param, as params.yaml spells it."""
    return next(f"{section}.{name}" for section, kind in SECTIONS.items() if isinstance(params, kind))


# Every count, size and seed is non-negative and fits 32 bits (faiss and Arrow take no more); every float is a score,
# a share or a number of seconds, none of which is meant beyond a million. Each param's own range is in its `check`.
INT_BOUNDS = (0, 2**31 - 1)
FLOAT_BOUNDS = (-1e6, 1e6)


def _within_bounds(source: str, key: str, value: object, hint: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high = INT_BOUNDS if int in (hint, *typing.get_args(hint)) else FLOAT_BOUNDS
    if not low <= value <= high:
        raise InputError(source, None, key, f"must be in [{low}, {high}], got {value}")


def _matches(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:  # nan and inf pass every `>=` range check unnoticed, so no param takes them
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def parse(section: str, data: dict | None, source: str = "params.yaml"):
    """Build the typed params of one stage from its params.yaml section."""
    cls = SECTIONS[section]
    data = data or {}
    if not isinstance(data, dict):
        raise InputError(source, None, section, "must be a mapping of keys to values")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            raise InputError(source, None, f"{section}.{key}", f"unknown key; known: {sorted(names)}")
        if not _matches(value, hints[key]):
            raise InputError(source, None, f"{section}.{key}", f"expected {hints[key]}, got {value!r}")
        _within_bounds(source, f"{section}.{key}", value, hints[key])
    floats = {k for k, hint in hints.items() if float in (hint, *typing.get_args(hint))}
    params = cls(**{k: (float(v) if k in floats and v is not None else v) for k, v in data.items()})
    params.check()
    return params


def load(section: str, path: str | Path = "params.yaml"):
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise InputError(str(path), None, None, f"not valid YAML: {err}") from err
    if not isinstance(document, dict):
        raise InputError(str(path), None, None, f"expected a mapping of stage names to sections, found {document!r}")
    return parse(section, document.get(section), str(path))
