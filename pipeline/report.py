"""Reports on a built dataset: the figures `dvc metrics show` lists, the tables `dvc plots` draws, and a static
HTML page with the same plots as inline SVG (no script, no network: it opens anywhere)."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import polars as pl

from pipeline import artifacts, ledger

BINS = np.linspace(-0.2, 1.0, 25)  # cosine similarities of unit vectors: 0.05 wide
COLOURS = {"positive": "#2b8a3e", "mined": "#1c7ed6", "counterfactual": "#e8590c"}


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


def _bars(title: str, labels: list[str], series: dict[str, list[float]], width: int = 720) -> str:
    """A grouped vertical bar chart as SVG: one group per label, one bar per series."""
    height, left, bottom, top = 300, 50, 60, 30
    peak = max([v for values in series.values() for v in values] + [1e-9])
    group = (width - left - 10) / max(1, len(labels))
    bar = group / (len(series) + 1)
    parts = [f'<svg class="plot" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    parts.append(f'<text x="{left}" y="18" font-size="14" font-weight="bold">{html.escape(title)}</text>')
    parts.append(f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#333"/>')
    for i, label in enumerate(labels):
        x0 = left + i * group
        for j, (name, values) in enumerate(series.items()):
            h = (height - bottom - top) * values[i] / peak
            colour = COLOURS.get(name, "#868e96")
            parts.append(
                f'<rect class="bar" data-series="{html.escape(name)}" x="{x0 + j * bar:.1f}" '
                f'y="{height - bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{html.escape(name)} {html.escape(label)}: {values[i]}</title></rect>"
            )
        if len(labels) <= 12 or i % 4 == 0:
            parts.append(
                f'<text x="{x0 + group / 2:.1f}" y="{height - bottom + 14}" font-size="10" text-anchor="end" '
                f'transform="rotate(-30 {x0 + group / 2:.1f} {height - bottom + 14})">{html.escape(label)}</text>'
            )
    for j, name in enumerate(series):
        parts.append(
            f'<rect x="{width - 160}" y="{top + 16 * j}" width="10" height="10" fill="{COLOURS.get(name, "#868e96")}"/>'
        )
        parts.append(f'<text x="{width - 145}" y="{top + 9 + 16 * j}" font-size="11">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def page(name: str, figures: dict, hist: pl.DataFrame, rejections: pl.DataFrame) -> str:
    """The static report: score distributions, rejections by reason, and the figures as tables."""
    kinds = [c for c in hist.columns if c != "score"]
    score_plot = _bars(
        "Score distributions (share of each kind per bin)",
        [f"{s:.2f}" for s in hist["score"]],
        {k: hist[k].to_list() for k in kinds},
    )
    labels = [f"{s}: {r}" for s, r in zip(rejections["stage"], rejections["reason"])]
    rejection_plot = _bars("Rejections by stage and reason", labels, {"rows": rejections["rows"].to_list()})
    rows = "".join(
        f"<tr><td>{html.escape(kind)}</td>" + "".join(f"<td>{v}</td>" for v in stats.values()) + "</tr>"
        for kind, stats in figures["scores"].items()
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}: pairforge report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 8px}</style></head><body>"
        f"<h1>{html.escape(name)}</h1><h2>Scores</h2>{score_plot}"
        "<p>positive: query · positive; mined: query · kept negative; counterfactual: anchor · edited negative.</p>"
        "<table><tr><th>kind</th><th>count</th><th>p10</th><th>p50</th><th>p90</th><th>mean</th></tr>"
        f"{rows}</table><h2>Rejections</h2>{rejection_plot}</body></html>"
    )
