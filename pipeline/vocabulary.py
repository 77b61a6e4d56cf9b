"""The stable codes every stage shares: decisions, outcomes, rejection reasons, rule op codes, LLM edit controls.

They are data: users filter the ledger and the artifacts on them, so they never change spelling. Every module
names them from here rather than as string literals. This module imports nothing, so the lowest modules (params,
schema) and the domain can both use it.
"""

from __future__ import annotations

from typing import Literal, get_args

# What happened to a candidate, an edit or a judged negative.
KEPT = "kept"
REJECTED = "rejected"
# What happened to a (text, op) the generate stage tried.
APPLIED = "applied"
NOT_APPLICABLE = "not_applicable"
TEXT_TOO_LONG = "text_too_long"  # longer than `generate.max_chars`: not parsed, not edited

# Rejection reasons, by the stage that decides them (the ledger's `reason` column).
# ingest
DUPLICATE_TEXT = "duplicate_text"  # an exact duplicate text, merged into the first id that carried it
BAD_ROW = "bad_row"  # a row that could not be used, with `ingest.on_bad_row: skip`
# mine
KNOWN_POSITIVE = "known_positive"
BELOW_RANGE_MIN = "below_range_min"
ABOVE_ABSOLUTE_MARGIN = "above_absolute_margin"
ABOVE_RELATIVE_MARGIN = "above_relative_margin"
ABOVE_MAX_SCORE = "above_max_score"
BELOW_MIN_SCORE = "below_min_score"
NOT_SAMPLED = "not_sampled"  # a valid candidate that sampling did not pick (the filter's refills)
# generate and filter: an LLM that gave no usable answer
UNPARSEABLE = "unparseable_output"  # the reply did not fit the task's schema (the raw output is kept)
BACKEND_ERROR = "backend_error"  # the backend failed on the item (the generate ledger keeps its own error code)
# An endpoint's passing failure, after its retries: the item is not judged or edited yet, and not rejected either
# (no ledger row); the next run asks for exactly these items. A `decision` and an `outcome` as well as a reason.
PENDING = "pending"
# HTTP statuses of a server that is busy or restarting, asked again (with every 5xx); other codes of a failed
# request that may go another way next time: no reply in time, a dropped connection, a reply cut short.
RETRIED_STATUS = (408, 409, 425, 429)
PASSING_ERRORS = ("timeout", "connection_error", "malformed_response")


# filter: negatives
NEAR_DUPLICATE = "near_duplicate"
LIKE_POSITIVE = "like_positive"  # as close to the query and its positive together as the positive is
LIKELY_POSITIVE = "likely_positive"  # the corpus's learned model gives it a high chance of being an unlabelled positive
JUDGE_RELEVANT = "judge_relevant"
# filter: generated edits
EDIT_UNCHANGED = "edit_unchanged"
EDIT_TRIVIAL = "edit_trivial"
EDIT_TOO_LARGE = "edit_too_large"
EDIT_DUPLICATE = "edit_duplicate"
EDIT_NOT_FLUENT = "edit_not_fluent"
MEANING_UNCHANGED = "meaning_unchanged"
EDIT_DRIFTED = "edit_drifted"
MEANING_CHANGED = "meaning_changed"
EDIT_STILL_SUPPORTED = "edit_still_supported"  # its context (a query's positive, a document's query) still fits it
MEANING_UNJUDGED = "meaning_unjudged"  # an LLM edit no judge able to read meaning accepted (the encoder cannot)
# pairs: generated queries (a query an LLM wrote for a document, kept only when it finds its way back to it)
COPIED_SPAN = "copied_span"  # a run of its document over `pairs.max_copied_words`, or most of it (`max_copied_share`)
DUPLICATE_QUERY = "duplicate_query"  # the same text as an earlier query, or nearly the same as its document's other
ROUND_TRIP_MISS = "round_trip_miss"  # the encoder does not rank its document within `pairs.round_trip_top_k`
AMBIGUOUS_QUERY = "ambiguous_query"  # other documents score within `pairs.ambiguous_margin` of its own
JUDGE_DISAGREES = "judge_disagrees"  # the cross-encoder (`filter.cross_encoder`) scores it below `pairs.ce_min`
# Where a positive pair comes from (`pairs/positives`' `positive_kind`).
JUDGED = "judged"
GENERATED = "generated"
PROMOTED_POSITIVE = "promoted"  # a mined candidate every judge found relevant (`export.promote_false_negatives`)
# Query styles an LLM writes in (`pipeline.query_writing.STYLES`); `prompt` is the user's own (`pairs.prompt`).
QueryStyle = Literal["question", "keywords", "claim", "prompt"]
QUERY_STYLES: tuple[str, ...] = get_args(QueryStyle)

# Why a query has fewer negatives than asked (its `short_queries` row, from mine and again from filter).
WINDOW_EXHAUSTED = "window_exhausted"  # every candidate up to the window's bound failed a score rule or sampling
CORPUS_EXHAUSTED = "corpus_exhausted"  # the corpus holds fewer candidates than the window
REFILL_EXHAUSTED = "refill_exhausted"  # the filter rejected negatives and `refill_depth` ran out of replacements
# ... and PENDING: the judge's endpoint failed on one of its candidates; it takes no refill until the next run.

# Rule-based edits, in the order they run (`pipeline.contrast.rules.OPS` maps each to its function).
RuleOp = Literal[
    "negation_insert",
    "negation_remove",
    "number_change",
    "swap_entities",
    "swap_noun_phrases",
    "antonym_flip",
    "paraphrase_contraction",
    "paraphrase_number_format",
]
RULE_OPS: tuple[str, ...] = get_args(RuleOp)

# LLM edit controls (`pipeline.contrast.prompts.CONTROLS` holds each one's instruction and example).
LLMControl = Literal["negate", "change_fact", "change_quantity", "swap_roles", "paraphrase"]
LLM_CONTROLS: tuple[str, ...] = get_args(LLMControl)


def passing_failure(error: str | None) -> bool:
    """Whether an LLM backend's error code is one that a later request may not meet (it leaves the item pending)."""
    if error in PASSING_ERRORS:
        return True
    code = error.removeprefix("http_") if error and error.startswith("http_") else ""
    return code.isdigit() and (int(code) in RETRIED_STATUS or int(code) >= 500)
