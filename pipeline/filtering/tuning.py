"""Calibration per corpus: the hardest setting whose measured false-negative rate meets `filter.target_fn_rate`.

Three knobs move: mine's `relative_margin` (candidates re-decided from the mine artifact, within the window mine
inspected; none is a setting too), the filter's `pair_closeness` and its `duplicate_cosine` (the cosine to a
positive above which a candidate is its near-duplicate). The grid is two planes through the configured setting:
every margin by every closeness bar, and every duplicate cosine by every closeness bar, the other knob as
configured (margins move little once closeness is set; the full product would cost five times as much). Every
setting of the grid runs the hidden-positive protocol (`pipeline.filtering.calibration`) on the calibration
queries. Among the settings whose pooled rate meets the target, the one whose kept negatives are hardest (the
highest mean similarity to their query) wins; fewer short queries break ties. Where none meets it, the one with
the lowest rate wins, and the report says the target was missed.

The rate reported is cross-fitted, so it is honest: the calibration queries fall into two folds by a hash of their
id, the setting chosen on one fold is measured on the other, and the two measurements pool. The dataset itself
gets the setting chosen on all calibration queries; its in-sample rate is reported beside, as the calibration's
own (optimistic) estimate.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pairforge.pipeline import artifacts, schema
from pairforge.pipeline.filtering import calibration, learned, negatives
from pairforge.pipeline.params import FilterParams, MineParams
from pairforge.pipeline.vocabulary import KEPT

MARGINS = (None, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
CLOSENESS = (0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55)
DUPLICATE_COSINE = (None, 0.9, 0.85, 0.8, 0.75)
LIKELY = (0.3, 0.2, 0.15, 0.1, 0.08, 0.05, 0.03, 0.02)


@dataclass(frozen=True)
class Setting:
    """None: the knob is off (no margin; no pair-closeness rule; no cosine near-duplicate rule; no learned rule)."""

    relative_margin: float | None
    pair_closeness: float | None
    duplicate_cosine: float | None
    likely_positive_above: float | None = None


@dataclass(frozen=True)
class Outcome:
    """Per calibration query, under one setting: (false negatives, negatives kept, sum of their scores)."""

    per_query: dict[str, tuple[int, int, float]]

    def pooled(self, queries: list[str], num_negatives: int) -> tuple[float, float, int]:
        """(rate, mean score, short queries) over `queries`."""
        fn = sum(self.per_query[q][0] for q in queries)
        n = sum(self.per_query[q][1] for q in queries)
        score = sum(self.per_query[q][2] for q in queries)
        short = sum(self.per_query[q][1] < num_negatives for q in queries)
        return (fn / n if n else 0.0), (score / n if n else float("-inf")), short


def _ascending(values: set) -> list:
    """None (off) first, then by value."""
    return sorted(values, key=lambda v: (v is not None, v or 0.0))


def settings(mine_params: MineParams, params: FilterParams, learned_rule: bool = False) -> list[Setting]:
    """The grid, with the configured values in it: margins from none to the widest, duplicate cosines from none
    to the strictest, each by closeness from the most lenient rule to the strictest, off included; where a model
    of unlabelled positives was learned, its bars from the most lenient, in place of the cosine rules."""
    margins = _ascending({*MARGINS, mine_params.relative_margin})
    cosines = sorted({*DUPLICATE_COSINE, params.duplicate_cosine}, key=lambda v: (v is not None, -(v or 0.0)))
    closeness = _ascending({None, *CLOSENESS, params.pair_closeness})
    closeness = [closeness[0], *reversed(closeness[1:])]
    planes = [Setting(m, c, params.duplicate_cosine) for m in margins for c in closeness]
    planes += [Setting(mine_params.relative_margin, c, d) for d in cosines for c in closeness]
    if learned_rule:
        bars = sorted({*LIKELY, params.likely_positive_above} - {None}, reverse=True)
        planes += [Setting(mine_params.relative_margin, None, None, bar) for bar in bars]
    return list(dict.fromkeys(planes))


def apply(setting: Setting, mine_params: MineParams, params: FilterParams) -> tuple[MineParams, FilterParams]:
    return (
        dataclasses.replace(mine_params, relative_margin=setting.relative_margin),
        dataclasses.replace(
            params,
            pair_closeness=setting.pair_closeness,
            duplicate_cosine=setting.duplicate_cosine,
            likely_positive_above=setting.likely_positive_above,
        ),
    )


@dataclass(frozen=True)
class Protocol:
    """The hidden-positive protocol's inputs, read once: the calibration queries, mine's candidates for them,
    every positive's score, the query texts and the documents they name."""

    sample: calibration.Sample
    candidates: pa.Table
    positive_scores: pa.Table
    query_text: dict[str, str]
    documents: negatives.Documents
    likely: learned.CrossFitted | None = None
    # Mine's decisions per mine setting: settings of the grid that share a margin share them.
    _decided: dict[MineParams, pa.Table] = field(default_factory=dict, repr=False, compare=False)

    def decided(self, mine_params: MineParams) -> pa.Table:
        """The calibration queries' candidates, re-decided with the hidden positives unlabelled."""
        if mine_params not in self._decided:
            known = self.sample.known
            self._decided[mine_params] = calibration.redecide(self.candidates, known, self.positive_scores, mine_params)
        return self._decided[mine_params]

    def judged(self, mine_params: MineParams, params: FilterParams) -> pa.Table:
        """The calibration queries' candidates, re-decided, then judged (the learned rule cross-fitted)."""
        decided, known, n = self.decided(mine_params), self.sample.known, mine_params.num_negatives
        found = negatives.judge(decided, known, self.query_text, self.documents, None, n, params, likely=self.likely)
        return found.judged

    def learn(
        self, mine_params: MineParams, params: FilterParams
    ) -> tuple[learned.LikelyPositive | None, learned.CrossFitted | None]:
        """The model of unlabelled positives fitted on every calibration query (for the dataset), and the two
        fitted on one fold each (for measuring it); None where a fold has too few hidden positives."""
        decided = self.decided(mine_params)
        pairs = list(zip(self.sample.known["query_id"].to_pylist(), self.sample.known["doc_id"].to_pylist()))
        known = negatives.Positives.build(pairs, self.documents, self.query_text)
        x = learned.signals(decided, known.cosines(decided, self.documents))
        rows = list(zip(decided["query_id"].to_pylist(), decided["doc_id"].to_pylist()))
        labels = np.array([doc_id in self.sample.hidden[query_id] for query_id, doc_id in rows])
        fold_of = {q: number for number, half in enumerate(folds(sorted(self.sample.hidden))) for q in half}
        fold = np.array([fold_of[query_id] for query_id, _ in rows])
        # Candidates the text rules reject (the query's or a positive's own text, in the corpus) are no example of
        # anything: unlabelled, they would teach that the closest candidates are never positives.
        text_rules = dataclasses.replace(params, duplicate_cosine=None, pair_closeness=None, likely_positive_above=None)
        copies = negatives.near_duplicates(decided, known, self.documents, text_rules)[0]
        use = learned.neighbourhood(decided) & np.array([reason is None for reason in copies], dtype=bool)
        whole = learned.LikelyPositive.fit(x[use], labels[use])
        halves = {f: learned.LikelyPositive.fit(x[use & (fold == f)], labels[use & (fold == f)]) for f in (0, 1)}
        if whole is None or None in halves.values():
            return None, None
        return whole, learned.CrossFitted(halves, fold_of)


def outcome(protocol: Protocol, setting: Setting, mine_params: MineParams, params: FilterParams) -> Outcome:
    """The protocol on the calibration queries under `setting`."""
    judged = protocol.judged(*apply(setting, mine_params, params))
    kept = judged.filter(pc.equal(judged["decision"], KEPT))
    hidden = protocol.sample.hidden
    counts = {q: [0, 0, 0.0] for q in hidden}
    for query_id, doc_id, score in zip(*(kept[c].to_pylist() for c in ("query_id", "doc_id", "score"))):
        counts[query_id][0] += doc_id in hidden[query_id]
        counts[query_id][1] += 1
        counts[query_id][2] += score
    return Outcome({q: (fn, n, s) for q, (fn, n, s) in counts.items()})


def choose(outcomes: dict[Setting, Outcome], queries: list[str], target: float, num_negatives: int) -> Setting:
    """The hardest setting meeting `target` on `queries` (fewer short queries break ties), else the lowest rate."""
    measured = {s: o.pooled(queries, num_negatives) for s, o in outcomes.items()}
    meeting = [s for s, (rate, _, _) in measured.items() if rate <= target]
    if meeting:
        return max(meeting, key=lambda s: (measured[s][1], -measured[s][2], -(s.relative_margin or 0.0)))
    return min(measured, key=lambda s: (measured[s][0], -measured[s][1]))


def folds(queries: list[str]) -> tuple[list[str], list[str]]:
    """Two halves of the calibration queries, by a hash of each id: the same split on every run and machine."""
    first = [q for q in queries if zlib.crc32(q.encode()) % 2 == 0]
    return first, [q for q in queries if zlib.crc32(q.encode()) % 2 == 1]


def tune(outcomes: dict[Setting, Outcome], target: float, num_negatives: int, seed: int) -> tuple[Setting, dict]:
    """The setting for the dataset, and the report: the cross-fitted rate with its interval, the in-sample rate
    of the chosen setting, the hardness paid and whether the target was met."""
    queries = sorted(next(iter(outcomes.values())).per_query)
    chosen = choose(outcomes, queries, target, num_negatives)
    held_out: list[tuple[int, int]] = []
    first, second = folds(queries)
    for fit, measure_on in ((first, second), (second, first)):
        if fit and measure_on:
            picked = outcomes[choose(outcomes, fit, target, num_negatives)]
            held_out += [picked.per_query[q][:2] for q in measure_on]
    rate, score, short = outcomes[chosen].pooled(queries, num_negatives)
    fn, n = (sum(column) for column in zip(*held_out)) if held_out else (0, 0)
    report = {
        "target": target,
        "setting": dataclasses.asdict(chosen),
        "met": rate <= target,
        "in_sample_rate": round(rate, 4),
        "cross_fitted_rate": round(fn / n, 4) if n else None,
        "cross_fitted_interval": [round(b, 4) for b in calibration.interval(held_out, seed)] if n else None,
        "mean_score": round(score, 4),
        "queries_short": short,
        "settings_tried": len(outcomes),
    }
    return chosen, report


def grid(protocol: Protocol, mine_params: MineParams, params: FilterParams) -> dict[Setting, Outcome]:
    """Every setting's outcome on the calibration queries."""
    grid_settings = settings(mine_params, params, learned_rule=protocol.likely is not None)
    return {setting: outcome(protocol, setting, mine_params, params) for setting in grid_settings}


@dataclass(frozen=True)
class Calibrated:
    """What the calibration found: the protocol's judged rows (`hidden_positive` flagged) under the settings the
    dataset gets, the report (the measured rate, and the tuning where a target was set), and those settings."""

    judged: pa.Table
    report: dict
    mine_params: MineParams
    params: FilterParams
    margin_moved: bool = False
    likely: learned.LikelyPositive | None = None

    def candidates(self, mined: pa.Table, positives: pa.Table, positive_scores: pa.Table) -> pa.Table:
        """A shard of mine's candidates (whole queries) under the chosen margin: re-decided where it moved."""
        if not self.margin_moved:
            return mined
        return calibration.redecide(mined, positives, positive_scores, self.mine_params)


def calibrate(
    mined: Path,
    corpus: Path,
    embeddings: Path,
    positives: pa.Table,
    query_text: dict[str, str],
    params: FilterParams,
    mine_params: MineParams,
) -> Calibrated:
    """The hidden-positive protocol on the mine stage's artifacts (`mined`: its folder): the model of unlabelled
    positives where one can be learned, and with `params.target_fn_rate` the settings that meet it (see the
    module's docstring)."""
    sample = calibration.sample(positives)
    n, seed = mine_params.num_negatives, mine_params.seed
    if not sample.hidden:
        empty = schema.JUDGED.empty_table()
        return Calibrated(calibration.flagged(empty, {}), calibration.measure(empty, {}, n, seed), mine_params, params)
    candidates = artifacts.select(mined / "candidates", "query_id", sample.query_ids)
    protocol = Protocol(
        sample, candidates, artifacts.read(mined / "positive_scores"), query_text,
        negatives.Documents.load(corpus, embeddings, candidates, sample.known, remember=True),
    )  # fmt: skip
    likely = None
    if params.likely_positive_above is not None and len(sample.hidden) >= calibration.MIN_QUERIES:
        likely, cross_fitted = protocol.learn(mine_params, params)
        protocol = dataclasses.replace(protocol, likely=cross_fitted)
    if likely is None:
        params = dataclasses.replace(params, likely_positive_above=None)
    else:  # the learned rule replaces the fixed cosine rules
        params = dataclasses.replace(params, duplicate_cosine=None, pair_closeness=None)
    tuning, configured_margin = None, mine_params.relative_margin
    if params.target_fn_rate is not None and len(sample.hidden) >= calibration.MIN_QUERIES:
        chosen, tuning = tune(grid(protocol, mine_params, params), params.target_fn_rate, n, seed)
        mine_params, params = apply(chosen, mine_params, params)
    judged = protocol.judged(mine_params, params)
    report = calibration.measure(judged, sample.hidden, n, seed)
    if likely is not None:
        bar = params.likely_positive_above
        report["learned"] = {**likely.describe(), "used": bar is not None, "above": bar}
    if tuning is not None:
        report["tuning"] = tuning
    moved = mine_params.relative_margin != configured_margin
    used = likely if params.likely_positive_above is not None else None
    return Calibrated(calibration.flagged(judged, sample.hidden), report, mine_params, params, moved, used)
