"""Which generated queries to keep: the checks of a query an LLM wrote for a document, over plain arrays.

A query is kept when it is a query (not a span copied out of its document), new (not a repeat of an earlier query,
nor nearly the same as another of its document's), and finds its way back (Promptagator's round-trip consistency):
searching the whole corpus with it ranks its document within the top k, and few other documents score about as
well (a query that many documents answer equally well teaches nothing about its own); and, where a cross-encoder
is configured, it agrees that the document answers the query. Every measure is returned for the ledger, whatever
the decision.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from pairforge.pipeline.params import PairsParams
from pairforge.pipeline.vocabulary import (
    AMBIGUOUS_QUERY,
    COPIED_SPAN,
    DUPLICATE_QUERY,
    JUDGE_DISAGREES,
    ROUND_TRIP_MISS,
)

WORD = re.compile(r"\w+")
QUERY_BLOCK = 4096  # queries scored against a corpus chunk at once: bounds the score matrix


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def copied_words(query: str, document: str) -> int:
    """The longest run of consecutive words the query shares with the document (case and punctuation aside)."""
    query_words, document_words = words(query), words(document)
    matcher = difflib.SequenceMatcher(None, query_words, document_words, autojunk=False)
    return matcher.find_longest_match(0, len(query_words), 0, len(document_words)).size


def normal(text: str) -> str:
    """A text's words, lower case, single-spaced: what "the same words" compares."""
    return " ".join(words(text))


def duplicates(texts: list[str], doc_ids: list[str], vectors: np.ndarray, seen: set[str], cosine: float) -> np.ndarray:
    """Per query: the same words as one already `seen` (normalised texts: the judged queries, every earlier query;
    each query's are added to it), or a cosine of at least `cosine` to an earlier query of the same document (its
    other styles and samples; a document's queries are judged together)."""
    earlier: dict[str, list[int]] = {}
    found = np.zeros(len(texts), bool)
    for i, (text, doc_id) in enumerate(zip(texts, doc_ids)):
        normal_text = normal(text)
        siblings = earlier.setdefault(doc_id, [])
        found[i] = normal_text in seen or bool(siblings and (vectors[siblings] @ vectors[i]).max() >= cosine)
        seen.add(normal_text)
        siblings.append(i)
    return found


@dataclass(frozen=True)
class RoundTrip:
    """Per query: its document's rank in the corpus (1 = first), its document's score, the best other document's
    score, and how many other documents score within the margin of its document's or above."""

    rank: np.ndarray
    score: np.ndarray
    best_other: np.ndarray
    near: np.ndarray


def round_trip(
    queries: np.ndarray,
    sources: np.ndarray,
    source_ids: list[str],
    corpus: Iterable[tuple[list[str], np.ndarray]],
    margin: float,
) -> RoundTrip:
    """Search the corpus, chunk by chunk ((doc ids, unit vectors)), with every query (unit vectors, one row each;
    `sources` holds each one's document vector, `source_ids` its id). Memory: one chunk and a block of scores."""
    own = np.einsum("ij,ij->i", queries, sources).astype(np.float32)
    above = np.zeros(len(queries), np.int64)
    near = np.zeros(len(queries), np.int64)
    best = np.full(len(queries), -np.inf, np.float32)
    source_ids = np.asarray(source_ids, dtype=object)
    for ids, vectors in corpus:
        ids = np.asarray(ids, dtype=object)
        for start in range(0, len(queries), QUERY_BLOCK):
            rows = slice(start, start + QUERY_BLOCK)
            scores = queries[rows] @ vectors.T
            scores[source_ids[rows, None] == ids[None, :]] = -np.inf  # the document itself is not an "other"
            above[rows] += (scores > own[rows, None]).sum(1)
            near[rows] += (scores >= own[rows, None] - margin).sum(1)
            if scores.shape[1]:
                best[rows] = np.maximum(best[rows], scores.max(1))
    return RoundTrip(above + 1, own, best, near)


def copied_span(copied: np.ndarray, lengths: np.ndarray, config: PairsParams) -> np.ndarray:
    """Per query: a copy of its document rather than a query, by its longest copied run of words (`copied`) against
    `max_copied_words`, and against its own length (`lengths`, in words) where `max_copied_share` is set: a title
    copied whole is shorter than any run bound a real query stays under."""
    long_run = copied > config.max_copied_words
    if config.max_copied_share is None:
        return long_run
    return long_run | (copied >= config.max_copied_share * np.maximum(lengths, 1))


def reasons(
    copied: np.ndarray, duplicate: np.ndarray, trip: RoundTrip, config: PairsParams, ce: np.ndarray | None = None
) -> list[str | None]:
    """The first check each query fails, in the order a reader would reject it, or None: kept. `copied`: each
    query's `copied_span`; `ce`: the cross-encoder's score of each (query, document), where one is configured."""
    found = np.full(len(copied), None, object)
    checks = (
        (ce < config.ce_min if ce is not None else np.zeros(len(copied), bool), JUDGE_DISAGREES),
        (trip.near >= config.ambiguous_docs, AMBIGUOUS_QUERY),
        (trip.rank > config.round_trip_top_k, ROUND_TRIP_MISS),
        (duplicate, DUPLICATE_QUERY),
        (copied, COPIED_SPAN),
    )
    for failed, reason in checks:  # last written wins: the first check in reading order
        found[failed] = reason
    return found.tolist()
