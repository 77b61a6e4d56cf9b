"""Validators for generated edits: is an edit a real, minimal, fluent change whose meaning moved as intended.

Cheap checks first, on every edit: unchanged text, a change of punctuation / case / spacing only, token-level edit
distance and normalised-distance bounds (a counterfactual must stay close to its original), duplicates of an
earlier edit of the same source. Then the measured ones, each optional: fluency as the increase of the mean token
negative log-likelihood under a small LM (Tailor's delta perplexity, in nats), and a meaning judge, whose score
says how much the meaning stayed the same: a meaning-changing edit it scores as "same" is `meaning_unchanged`, one
it scores as unrelated is `edit_drifted`, a paraphrase it scores as changed is `meaning_changed`.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pyarrow as pa
from rapidfuzz.distance import Levenshtein

from pairforge.pipeline.vocabulary import (
    EDIT_DRIFTED,
    EDIT_DUPLICATE,
    EDIT_TOO_LARGE,
    EDIT_TRIVIAL,
    EDIT_UNCHANGED,
    KEPT,
    MEANING_CHANGED,
    MEANING_UNCHANGED,
    REJECTED,
)

TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    return TOKEN.findall(unicodedata.normalize("NFKC", text))


def token_edits(original: str, edited: str) -> int:
    """Word-level Levenshtein distance: insertions, deletions and substitutions of whole tokens."""
    return Levenshtein.distance(tokens(original), tokens(edited))


def edit_ratio(original: str, edited: str) -> float:
    """Token edits over the longer text's tokens (normalised edit distance, 0 same .. 1 nothing in common)."""
    return token_edits(original, edited) / max(1, len(tokens(original)), len(tokens(edited)))


# A sentence ends at . ! or ? before a space and a capital, digit or opening mark: "S. cerevisiae" and "e.g. the" go on.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def changed_sentences(original: str, edited: str) -> tuple[str, str]:
    """The sentences an edit changed, in the original and in the edit (the whole texts of a one-sentence text, or
    where the change spans them all): where fluency and meaning are judged, since a one-word change scored over a
    250-word abstract moves its mean token NLL and its cosine by almost nothing."""
    before, after = SENTENCE_END.split(original), SENTENCE_END.split(edited)
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    old, new = before[start : len(before) - end], after[start : len(after) - end]
    return (" ".join(old), " ".join(new)) if old and new else (original, edited)


def _letters(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).casefold())


def minimality(original: str, edited: str, max_tokens: int, max_ratio: float) -> tuple[str | None, str | None]:
    """(reason, detail) for an edit that is no change, a trivial change or too large a change; (None, None) if fine."""
    if " ".join(original.split()) == " ".join(edited.split()):
        return EDIT_UNCHANGED, "the edit is the original text"
    if _letters(original) == _letters(edited):
        return EDIT_TRIVIAL, "only punctuation, case or spacing changed"
    distance, ratio = token_edits(original, edited), edit_ratio(original, edited)
    if distance > max_tokens or ratio > max_ratio:
        return EDIT_TOO_LARGE, f"{distance} token edits, ratio {ratio:.2f} (max {max_tokens}, ratio {max_ratio})"
    return None, None


def check(contrast: pa.Table, max_tokens: int, max_ratio: float) -> pa.Table:
    """Adds `token_edits`, `edit_ratio`, `decision`, `reason`, `detail` from the cheap checks, in row order.

    A second edit of the same source with the same text as an earlier one is `edit_duplicate`, whatever made it.
    """
    reasons, details, distances, ratios, seen = [], [], [], [], set()
    rows = zip(contrast["source_kind"].to_pylist(), contrast["source_id"].to_pylist())
    for (kind, source), original, edited in zip(rows, contrast["original"].to_pylist(), contrast["edited"].to_pylist()):
        distances.append(token_edits(original, edited))
        ratios.append(edit_ratio(original, edited))
        reason, detail = minimality(original, edited, max_tokens, max_ratio)
        key = (kind, source, " ".join(edited.split()))
        if reason is None and key in seen:
            reason, detail = EDIT_DUPLICATE, "an earlier edit of this source has the same text"
        seen.add(key)
        reasons.append(reason)
        details.append(detail)
    return (
        contrast.append_column("token_edits", pa.array(distances, pa.int32()))
        .append_column("edit_ratio", pa.array(ratios, pa.float32()))
        .append_column("decision", pa.array([KEPT if r is None else REJECTED for r in reasons]))
        .append_column("reason", pa.array(reasons, pa.string()))
        .append_column("detail", pa.array(details, pa.string()))
    )


def meaning_reasons(
    preserves_meaning: np.ndarray,
    sameness: np.ndarray,
    unchanged_above: float | None,
    drifted_below: float | None,
    paraphrase_min: float,
) -> list[str | None]:
    """Per edit, the judge's verdict: `sameness` is how much the judge says the meaning stayed (cosine, a
    cross-encoder's score, an LLM's P(same)). NaN (no verdict) and a null bound reject nothing."""
    reasons: list[str | None] = []
    for preserves, score in zip(preserves_meaning, sameness):
        if np.isnan(score):
            reasons.append(None)
        elif preserves:
            reasons.append(MEANING_CHANGED if score < paraphrase_min else None)
        elif unchanged_above is not None and score >= unchanged_above:
            reasons.append(MEANING_UNCHANGED)
        elif drifted_below is not None and score < drifted_below:
            reasons.append(EDIT_DRIFTED)
        else:
            reasons.append(None)
    return reasons
