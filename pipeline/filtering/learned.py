"""Likely positives, learned from the corpus's own labels: a judge stronger than any one of the bi-encoder's signals.

On the queries with several judged positives (the hidden-positive protocol of `pipeline.filtering.calibration`),
the hidden positives among each query's candidates are labelled examples of what an unlabelled positive looks
like to the bi-encoder. A logistic regression over the signals it gives for free (the candidate's cosine to the
query and to the positive, the positive's own score, closeness to the pair, the relative margin, the rank, and
how far the candidate stands out from its query's other top candidates) turns them into the chance that a
candidate is an unlabelled positive. Fitted per corpus, it weighs the signals as that corpus needs (on a
paraphrase corpus the cosine to the positive, on question/answer pairs closeness to the pair); measured with
cross-fitted folds on SciFact, SICK, SQuAD and STS-B its ROC AUC at spotting hidden positives was above the best
single signal on each (see the README).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Each query's first TOP candidates (by rank) are its neighbourhood: what the relative signals compare with, and
# what the model learns from (deeper candidates are seldom positives, and the window's depth varies).
TOP = 30
# Fewer hidden positives among the neighbourhoods than this learn nothing reliable: the fixed rules decide.
MIN_POSITIVES = 20
SIGNALS = (
    "cosine to the query",
    "cosine to the positive",
    "positive's cosine to the query",
    "closeness to the pair",
    "cosine / positive's",
    "rank / 30",
    "cosine to the query - neighbourhood mean",
    "cosine to the positive - neighbourhood mean",
)


def signals(candidates: pa.Table, to_positive: np.ndarray) -> np.ndarray:
    """One row of `SIGNALS` per candidate (`schema.CANDIDATES` rows, whole queries; `to_positive`: each one's
    cosine to its query's positives, the highest). Known positives (no rank) get rank 0; they are never judged."""
    score = candidates["score"].to_numpy(zero_copy_only=False).astype(np.float64)
    positive = candidates["pos_score"].to_numpy(zero_copy_only=False).astype(np.float64)
    rank = pc.fill_null(candidates["rank"], 0).to_numpy(zero_copy_only=False).astype(np.float64)
    _, query = np.unique(candidates["query_id"].to_numpy(zero_copy_only=False), return_inverse=True)
    near = (rank < TOP) & candidates["rank"].is_valid().to_numpy(zero_copy_only=False)
    count = np.maximum(np.bincount(query, weights=near), 1)

    def neighbourhood_mean(values: np.ndarray) -> np.ndarray:
        return (np.bincount(query, weights=values * near) / count)[query]

    return np.column_stack(
        [
            score,
            to_positive,
            positive,
            (score + to_positive) / (1 + positive),
            score / np.where(positive > 0, positive, 1e-6),
            rank / TOP,
            score - neighbourhood_mean(score),
            to_positive - neighbourhood_mean(to_positive),
        ]
    )


def neighbourhood(candidates: pa.Table) -> np.ndarray:
    """The rows the model learns from: ranked candidates among their query's first `TOP`."""
    rank = pc.fill_null(candidates["rank"], TOP).to_numpy(zero_copy_only=False)
    return rank < TOP


@dataclass(frozen=True)
class LikelyPositive:
    """The fitted model: a weight per signal (`SIGNALS`) and an intercept, and what it learned from."""

    weights: tuple[float, ...]
    intercept: float
    examples: int
    positives: int

    @classmethod
    def fit(cls, x: np.ndarray, labels: np.ndarray) -> LikelyPositive | None:
        """The model of `labels` (hidden positive or not) given the signals `x`; None with too few positives."""
        positives = int(labels.sum())
        if positives < MIN_POSITIVES or positives == len(labels):
            return None
        # Imported here: scikit-learn takes ~1.1 s to import, which every filter run paid with the rule off.
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(max_iter=2000).fit(x, labels)
        return cls(tuple(float(w) for w in model.coef_[0]), float(model.intercept_[0]), len(labels), positives)

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ np.asarray(self.weights) + self.intercept)))

    def chance(self, candidates: pa.Table, to_positive: np.ndarray) -> np.ndarray:
        """Per candidate, the chance that it is an unlabelled positive."""
        return self.probability(signals(candidates, to_positive))

    def describe(self) -> dict:
        """For the manifest and the card: what it learned from and the weight of each signal."""
        weights = dict(zip(SIGNALS, (round(w, 3) for w in self.weights)))
        return {"examples": self.examples, "hidden_positives": self.positives, "weights": weights}


@dataclass(frozen=True)
class CrossFitted:
    """Two models, each fitted on one fold of the calibration queries (`models`: by the fold it learned from;
    `fold_of`: each query's fold): a query is judged by the model of the other fold, never by one that learned
    from it."""

    models: dict[int, LikelyPositive]
    fold_of: dict[str, int]

    def chance(self, candidates: pa.Table, to_positive: np.ndarray) -> np.ndarray:
        x = signals(candidates, to_positive)
        fold = np.array([self.fold_of[q] for q in candidates["query_id"].to_pylist()], dtype=np.int64)
        found = np.zeros(len(fold))
        for fitted_on, model in self.models.items():
            found[fold != fitted_on] = model.probability(x[fold != fitted_on])
        return found
