"""The checks a generated query must pass, over plain arrays: copied spans, duplicates, the round trip through the
corpus (chunked exactly as whole) and the order reasons are given in."""

from __future__ import annotations

import numpy as np
import pytest

from pairforge.pipeline import round_trip
from pairforge.pipeline.params import PairsParams
from pairforge.pipeline.schema import InputError


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_copied_words_is_the_longest_shared_run_of_words_whatever_the_case_and_punctuation():
    document = "Aspirin, taken daily, reduces the risk of stroke in adults over sixty."
    assert round_trip.copied_words("Does aspirin reduce the risk of stroke?", document) == 4  # "the risk of stroke"
    assert round_trip.copied_words("ASPIRIN TAKEN DAILY REDUCES", document) == 4
    assert round_trip.copied_words("heart attack", document) == 0


def test_duplicates_are_repeated_words_anywhere_or_near_copies_among_one_documents_queries():
    texts = ["What lowers stroke risk?", "what lowers  stroke risk", "Aspirin and stroke", "Aspirin & stroke!"]
    vectors = unit([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0.05]])
    # Same words as an earlier query (any document) -> duplicate; a judged query's words too.
    seen = {round_trip.normal("Aspirin and stroke?")}
    found = round_trip.duplicates(texts, ["d1", "d2", "d3", "d3"], vectors, seen, 0.95)
    assert found.tolist() == [False, True, True, True]
    assert round_trip.normal("What lowers stroke risk?") in seen, "every query's words are seen by the next block"
    assert round_trip.duplicates(["WHAT lowers stroke risk"], ["d9"], vectors[:1], seen, 0.95).tolist() == [True]
    # The last two are close in meaning: a duplicate within one document, not across two.
    apart = round_trip.duplicates(texts[2:], ["d3", "d4"], vectors[2:], set(), 0.95)
    assert apart.tolist() == [False, False]
    together = round_trip.duplicates(["a b", "c d"], ["d3", "d3"], vectors[2:], set(), 0.95)
    assert together.tolist() == [False, True]


def test_round_trip_ranks_each_querys_document_in_the_whole_corpus_the_same_in_chunks_as_at_once():
    rng = np.random.default_rng(0)
    corpus = unit(rng.normal(size=(50, 8)))
    ids = [f"d{i}" for i in range(50)]
    queries = unit(corpus[[3, 7, 20]] + rng.normal(scale=0.6, size=(3, 8)))
    sources = corpus[[3, 7, 20]]
    whole = round_trip.round_trip(queries, sources, ["d3", "d7", "d20"], [(ids, corpus)], margin=0.05)
    chunked = round_trip.round_trip(
        queries, sources, ["d3", "d7", "d20"], [(ids[i : i + 7], corpus[i : i + 7]) for i in range(0, 50, 7)], 0.05
    )
    for name in ("rank", "score", "best_other", "near"):
        assert np.allclose(getattr(whole, name), getattr(chunked, name)), name
    scores = queries @ corpus.T
    for row, source in enumerate((3, 7, 20)):
        others = np.delete(scores[row], source)
        assert whole.rank[row] == 1 + (others > scores[row, source]).sum()
        assert whole.near[row] == (others >= scores[row, source] - 0.05).sum()
        assert whole.best_other[row] == pytest.approx(others.max())
        assert whole.score[row] == pytest.approx(scores[row, source])


def test_reasons_give_the_first_failed_check_in_reading_order():
    trip = round_trip.RoundTrip(
        rank=np.array([1, 1, 9, 1, 9]), score=np.zeros(5), best_other=np.zeros(5), near=np.array([0, 0, 9, 5, 0])
    )
    duplicate = np.array([False, True, True, False, False])
    config = PairsParams(round_trip_top_k=3, ambiguous_docs=3, max_copied_words=10)
    copied = round_trip.copied_span(np.array([3, 30, 30, 0, 0]), np.array([12, 40, 40, 6, 6]), config)
    assert round_trip.reasons(copied, duplicate, trip, config) == [
        None, "copied_span", "copied_span", "ambiguous_query", "round_trip_miss",
    ]  # fmt: skip
    # A configured cross-encoder has the last word: a query every other check passed, scored below ce_min.
    ce = np.array([0.2, 0.9, 0.9, 0.9, 0.9])
    assert round_trip.reasons(copied, duplicate, trip, config, ce)[0] == "judge_disagrees"
    assert round_trip.reasons(copied, duplicate, trip, config, ce + 0.5)[0] is None


def test_a_title_copied_whole_is_a_copied_span_by_its_share_of_the_query():
    document = "Aspirin and the risk of stroke in older adults. We followed 2,000 adults for ten years."
    queries = ["Aspirin and the risk of stroke in older adults", "Does aspirin lower stroke risk in the elderly?"]
    copied = np.array([round_trip.copied_words(q, document) for q in queries])
    lengths = np.array([len(round_trip.words(q)) for q in queries])
    assert copied.tolist() == [9, 1] and lengths.tolist() == [9, 8]  # the title's 9 words: under max_copied_words
    assert round_trip.copied_span(copied, lengths, PairsParams(max_copied_share=None)).tolist() == [False, False]
    assert round_trip.copied_span(copied, lengths, PairsParams()).tolist() == [True, False]  # default share 0.8


def test_a_copied_share_outside_zero_to_one_is_an_error_naming_the_key():
    with pytest.raises(InputError, match="pairs.max_copied_share"):
        PairsParams(max_copied_share=1.5).check()
