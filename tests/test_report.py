"""The report: metrics and plots for DVC, and the HTML report's plots as headless Chromium renders them."""

from __future__ import annotations

import collections
import html
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from pairforge.pipeline import artifacts, report
from tests.conftest import export_table

LEDGER_FOLDERS = ("ingested", "mined", "generated", "filtered")


def test_metrics_and_plots_for_dvc(pipeline_run):
    metrics = json.loads((pipeline_run / "metrics/export.json").read_text())
    assert (
        metrics["scores"]["positive"]["count"]
        == artifacts.manifest(pipeline_run / "data/mined/positive_scores")["rows"]
    )
    assert metrics["scores"]["mined"]["mean"] < metrics["scores"]["positive"]["mean"]
    contrast_rows = export_table(pipeline_run, "contrast-triplet").num_rows
    assert metrics["scores"]["counterfactual"]["count"] == contrast_rows > 0, "one score per exported contrast row"
    # The ledger counted here from its four artifacts with pyarrow, not with the code that wrote the metrics.
    counts = collections.Counter()
    for folder in LEDGER_FOLDERS:
        ledger_rows = artifacts.read(pipeline_run / "data" / folder / "rejections", ["stage", "reason"])
        counts.update(f"{s}/{r}" for s, r in zip(ledger_rows["stage"].to_pylist(), ledger_rows["reason"].to_pylist()))
    assert metrics["rejections"] == dict(counts)
    mine_total = sum(n for key, n in counts.items() if key.startswith("mine/"))
    assert set(metrics["rejection_shares"]["mine"]) == {key.removeprefix("mine/") for key in counts if "mine/" in key}
    for reason, share in metrics["rejection_shares"]["mine"].items():
        assert share == round(counts[f"mine/{reason}"] / mine_total, 4)
    assert abs(sum(metrics["rejection_shares"]["filter"].values()) - 1) < 1e-3
    histogram = pl.read_csv(pipeline_run / "plots/scores.csv")
    for kind in ("positive", "mined", "counterfactual"):
        assert abs(histogram[kind].sum() - 1) < 1e-3, "each kind's shares sum to one"
    plotted = pl.read_csv(pipeline_run / "plots/rejections.csv")
    assert {f"{s}/{r}": n for s, r, n in plotted.select("stage", "reason", "rows").iter_rows()} == dict(counts)


def ledger_counts(data) -> pl.DataFrame:
    """Rejections by stage and reason, counted here from the four ledgers with pyarrow."""
    tables = [artifacts.read(data / folder / "rejections", ["stage", "reason"]) for folder in LEDGER_FOLDERS]
    return pl.from_arrow(pa.concat_tables(tables)).group_by("stage", "reason").len("rows")


def svg_texts(svg: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def test_rejections_are_drawn_on_a_log_scale_when_they_span_decades(pipeline_run):
    counts = ledger_counts(pipeline_run / "data")
    assert counts["rows"].max() > 100 * counts["rows"].min(), "the sample's ledger spans more than two decades"
    filtered = counts.filter(pl.col("stage") == "filter")
    assert filtered["rows"].max() <= 100 * filtered["rows"].min(), "the filter's alone does not"
    for rows, scale in ((counts, "log"), (filtered, "linear")):
        chart = report.rejection_chart(rows)
        assert chart["encoding"]["x"]["scale"]["type"] == scale
        drawn = svg_texts(report.svg(chart))
        assert chart["title"] in drawn and chart["encoding"]["x"]["title"] in drawn and "stage: reason" in drawn
        assert {f"{s}: {r}" for s, r in rows.select("stage", "reason").iter_rows()} <= set(drawn), "labels whole"
        assert {str(n) for n in rows["rows"]} <= set(drawn), "each bar's count is written at its end"
        assert not [t for t in drawn if t.endswith("…")], "no label clipped"


def test_the_score_chart_has_titled_axes_and_a_line_per_kind(pipeline_run):
    hist = pl.read_csv(pipeline_run / "plots/scores.csv")
    chart = report.score_chart(hist)
    drawn = svg_texts(report.svg(chart))
    assert {chart["title"], chart["encoding"]["x"]["title"], chart["encoding"]["y"]["title"]} <= set(drawn)
    assert set(report.COLOURS) <= set(drawn), "the legend names every kind"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium (.ci/run); it is missing")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return found


@pytest.mark.slow
def test_the_html_report_renders_its_plots_in_headless_chromium(pipeline_run, tmp_path):
    from PIL import Image

    browser = chromium()
    page = tmp_path / "report.html"
    done = subprocess.run(
        [sys.executable, "-m", "pairforge.cli", "report", "--out", str(page)], cwd=pipeline_run, capture_output=True
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,1400", "--hide-scrollbars",
    ]  # fmt: skip
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.stdout.count('class="plot"') == 2, "both plots are in the rendered page"
    assert "<script" not in page.read_text() and not re.search(r"(src|href)=.https?:", page.read_text()), "offline"
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    for kind, colour in report.COLOURS.items():  # each series' line was painted, not just present in the source
        rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
        assert (pixels == rgb).all(axis=-1).sum() > 200, f"{kind} line ({colour}) not drawn"
