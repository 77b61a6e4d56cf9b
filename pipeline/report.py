"""Reports on a built dataset: the figures `dvc metrics show` lists, the tables `dvc plots` draws, and a static
HTML page with the same plots as Vega-Lite charts drawn into inline SVG (no script, no network: it opens anywhere)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl
import vl_convert

from pairforge.pipeline import artifacts, ledger

BINS = np.linspace(-0.2, 1.0, 25)  # cosine similarities of unit vectors: 0.05 wide
COLOURS = {"positive": "#2b8a3e", "mined": "#1c7ed6", "counterfactual": "#e8590c"}
VEGA_LITE = "https://vega.github.io/schema/vega-lite/v5.json"  # a name for the spec's version: never fetched
LOG_SPAN = 100  # counts whose largest is more than this many times the smallest are drawn on a log scale
STYLE = {  # Vega-Lite's defaults (10 px labels) are small on a page of 16 px text
    "font": "sans-serif",
    "title": {"fontSize": 16},
    "axis": {"labelFontSize": 12, "titleFontSize": 13},
    "legend": {"labelFontSize": 12, "titleFontSize": 13},
    "text": {"fontSize": 12},
}


def scores(data: Path) -> dict[str, np.ndarray]:
    """positive: query . positive; mined: query . kept negative; counterfactual: anchor . counterfactual negative of
    each exported contrast row (the filter's `context_scores`: an edited query against its positive documents, an
    edited positive against its queries, an edited sentence against its original)."""
    found = {
        "positive": artifacts.read(data / "mined/positive_scores", ["score"])["score"].to_numpy(),
        "mined": artifacts.read(data / "filtered/negatives", ["score"])["score"].to_numpy(),
    }
    edits = pl.from_arrow(artifacts.read(data / "filtered/edits", ["context_scores"]))
    found["counterfactual"] = edits["context_scores"].explode().drop_nulls().to_numpy()
    return found


def histogram(found: dict[str, np.ndarray]) -> pl.DataFrame:
    """One row per bin: its centre and the share of each kind's scores in it (kinds of any size compare)."""
    columns = {"score": np.round((BINS[:-1] + BINS[1:]) / 2, 3)}
    for kind, values in found.items():
        counts, _ = np.histogram(np.clip(values, BINS[0], BINS[-1]), BINS)
        columns[kind] = np.round(counts / max(1, len(values)), 4)
    return pl.DataFrame(columns)


def metrics(data: Path, found: dict[str, np.ndarray]) -> dict:
    """Counts, rejection shares by stage and reason, and score statistics."""
    counts, _ = ledger.summary(data, samples=0)
    shares = {}  # each reason's share of its stage's rejections
    for stage, reason, rows in counts.iter_rows():
        shares.setdefault(stage, {})[reason] = round(rows / counts.filter(pl.col("stage") == stage)["rows"].sum(), 4)
    stats = {
        kind: {
            "count": int(len(values)),
            **(
                {q: round(float(np.quantile(values, p)), 4) for q, p in (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))}
                | {"mean": round(float(values.mean()), 4)}
                if len(values)
                else {}
            ),
        }
        for kind, values in found.items()
    }
    rejected = {f"{stage}/{reason}": rows for stage, reason, rows in counts.iter_rows()}
    return {"rejections": rejected, "rejection_shares": shares, "scores": stats}


def _chart(title: str, **spec: object) -> dict:
    return {"$schema": VEGA_LITE, "title": title, "config": STYLE, **spec}


def score_chart(hist: pl.DataFrame) -> dict:
    """Each kind's share of its scores per bin, a line per kind (Vega-Lite)."""
    shares = hist.unpivot(index="score", variable_name="kind", value_name="share")
    kinds = [c for c in hist.columns if c != "score"]
    x = {"field": "score", "type": "quantitative", "scale": {"domain": [float(BINS[0]), float(BINS[-1])]}}
    x["title"] = f"cosine similarity (bin centre; bins {BINS[1] - BINS[0]:.2f} wide)"
    colour = {"domain": kinds, "range": [COLOURS.get(k, "#868e96") for k in kinds]}
    return _chart(
        "Score distributions",
        width=640,
        height=260,
        data={"values": shares.to_dicts()},
        mark={"type": "line", "point": True, "strokeWidth": 2},
        encoding={
            "x": x,
            "y": {
                "field": "share",
                "type": "quantitative",
                "title": "share of the kind's scores",
                "axis": {"format": "%"},
            },
            "color": {"field": "kind", "type": "nominal", "title": "kind", "scale": colour},
        },
    )


def rejection_chart(rejections: pl.DataFrame) -> dict:
    """A bar per (stage, reason) in pipeline order, its count at its end; a log scale when the counts span more
    than two decades, so that one large reason does not flatten the others (Vega-Lite)."""
    counts = rejections["rows"]
    log = counts.max() > LOG_SPAN * counts.min()
    order = pl.col("stage").replace_strict({stage: i for i, stage in enumerate(ledger.LEDGERS)})
    rows = rejections.sort(order, "rows", descending=[False, True])
    rows = rows.select(pl.format("{}: {}", "stage", "reason").alias("reason"), "stage", "rows")
    x = {"field": "rows", "type": "quantitative", "title": "rows rejected" + (" (log scale)" if log else "")}
    # Bars start at zero, which a log scale has not: there they start at 0.5, so that a count of 1 still shows.
    # The axis runs past the largest count, so that its label fits inside the plot.
    x["scale"] = (
        {"type": "log", "domain": [0.5, counts.max() * 4]}
        if log
        else {"type": "linear", "domain": [0, counts.max() * 1.15]}
    )
    stage = {"field": "stage", "type": "nominal", "title": "stage", "scale": {"domain": list(ledger.LEDGERS)}}
    return _chart(
        "Rejections by stage and reason",
        width=560,
        height={"step": 24},
        data={"values": rows.to_dicts()},
        encoding={
            "y": {
                "field": "reason",
                "type": "nominal",
                "sort": None,
                "title": "stage: reason",
                "axis": {"labelLimit": 0},
            },
            "x": x,
        },
        layer=[
            {"mark": "bar", "encoding": {"x2": {"datum": 0.5 if log else 0}, "color": stage}},
            {"mark": {"type": "text", "align": "left", "dx": 3}, "encoding": {"text": {"field": "rows"}}},
        ],
    )


def svg(chart: dict) -> str:
    """The chart drawn as SVG by vl-convert (Vega and Vega-Lite compiled into the package): no browser, no script
    and no network, here or where the page is opened."""
    return vl_convert.vegalite_to_svg(chart)


def page(name: str, figures: dict, hist: pl.DataFrame, rejections: pl.DataFrame) -> str:
    """The static report: score distributions, rejections by reason, and the figures as tables."""
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td>" + "".join(f"<td>{v}</td>" for v in stats.values()) + "</tr>"
        for kind, stats in figures["scores"].items()
    )
    rejected = (
        f"<figure class='plot'>{svg(rejection_chart(rejections))}</figure>" if rejections.height else "<p>None.</p>"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}: pairforge report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}figure{margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>"
        f"<h1>{html.escape(name)}</h1><h2>Scores</h2><figure class='plot'>{svg(score_chart(hist))}</figure>"
        "<p>positive: query · positive; mined: query · kept negative; counterfactual: anchor · edited negative.</p>"
        "<table><tr><th>kind</th><th>count</th><th>p10</th><th>p50</th><th>p90</th><th>mean</th></tr>"
        f"{rows}</table><h2>Rejections</h2>{rejected}</body></html>"
    )
