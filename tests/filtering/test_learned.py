"""The model of unlabelled positives: its signals, its fit, and cross-fitting (a query never judged by a model that
learned from it)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from pairforge.pipeline import schema
from pairforge.pipeline.filtering import learned


def candidates(queries: int, per_query: int, seed: int = 0) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """Synthetic mine candidates, in rank order per query, whose hidden positives stand close to the positive."""
    rng = np.random.default_rng(seed)
    rows, to_positive, labels = [], [], []
    for q in range(queries):
        positive = rng.uniform(0.6, 0.9)
        for rank in range(per_query):
            hidden = rank < 3 and rng.random() < 0.4
            score = 0.8 - 0.01 * rank + rng.normal(0, 0.02)
            rows.append((f"q{q}", f"d{q}-{rank}", rank, score, positive))
            to_positive.append(rng.normal(0.85 if hidden else 0.5, 0.08))
            labels.append(hidden)
    table = pa.table(
        {
            "query_id": [r[0] for r in rows],
            "doc_id": [r[1] for r in rows],
            "rank": pa.array([r[2] for r in rows], pa.int32()),
            "score": pa.array([r[3] for r in rows], pa.float32()),
            "pos_score": pa.array([r[4] for r in rows], pa.float32()),
            "decision": ["kept"] * len(rows),
            "reason": pa.array([None] * len(rows), pa.string()),
        },
        schema=schema.CANDIDATES,
    )
    return table, np.array(to_positive), np.array(labels)


def test_signals_compare_each_candidate_with_its_own_querys_neighbourhood():
    table, to_positive, _ = candidates(queries=2, per_query=40)
    x = learned.signals(table, to_positive)
    assert x.shape == (80, len(learned.SIGNALS))
    first = slice(0, 40)
    near = np.arange(40) < learned.TOP
    expected = to_positive[first] - to_positive[first][near].mean()
    assert x[first, 7] == pytest.approx(expected), "relative to the query's first 30 candidates, not the other's"
    assert x[first, 3] == pytest.approx((x[first, 0] + to_positive[first]) / (1 + x[first, 2]))
    assert learned.neighbourhood(table).sum() == 2 * learned.TOP


def test_the_model_learns_what_a_hidden_positive_looks_like_or_declines():
    table, to_positive, labels = candidates(queries=200, per_query=30)
    model = learned.LikelyPositive.fit(learned.signals(table, to_positive), labels)
    chance = model.chance(table, to_positive)
    assert chance[labels].mean() > 0.5 > chance[~labels].mean()
    described = model.describe()
    assert described["hidden_positives"] == labels.sum() and described["weights"]["cosine to the positive"] > 0
    few = labels & (np.cumsum(labels) <= learned.MIN_POSITIVES - 1)
    assert learned.LikelyPositive.fit(learned.signals(table, to_positive), few) is None, "too few to learn from"


def test_cross_fitting_judges_each_query_with_the_other_folds_model():
    table, to_positive, labels = candidates(queries=100, per_query=30)
    x = learned.signals(table, to_positive)
    query = np.array(table["query_id"].to_pylist())
    fold_of = {f"q{q}": q % 2 for q in range(100)}
    fold = np.array([fold_of[q] for q in query])
    models = {f: learned.LikelyPositive.fit(x[fold == f], labels[fold == f]) for f in (0, 1)}
    chance = learned.CrossFitted(models, fold_of).chance(table, to_positive)
    assert chance[fold == 1] == pytest.approx(models[0].probability(x[fold == 1]))
    assert chance[fold == 0] == pytest.approx(models[1].probability(x[fold == 0]))
