"""Progress of a long step, as a log file shows it: rows done, rate, time left, at most every LOG_EVERY_S."""

from __future__ import annotations

import subprocess
import sys
import time

import pyarrow as pa

from pairforge.pipeline import progress


def test_a_long_step_logs_rows_rate_and_time_left(monkeypatch, caplog):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.05)

    def slow(parts: int):
        for _ in range(parts):
            time.sleep(0.03)
            yield pa.table({"id": ["a"] * 10})

    with caplog.at_level("INFO", logger="pairforge.progress"):
        out = list(progress.tracked(slow(6), "EmbedBatch", 60))
    assert sum(t.num_rows for t in out) == 60, "every result passes through"
    lines = [r.getMessage() for r in caplog.records]
    assert 1 <= len(lines) <= 3, lines  # about one per 0.05 s of a 0.18 s step, never one per part
    assert lines[0].startswith("EmbedBatch: ") and " / 60 rows (" in lines[0] and "rows/s, " in lines[0]
    assert lines[0].endswith("s left")
    assert progress.line("x", 4096, 6292, 60.0) == "x: 4,096 / 6,292 rows (65%), 68.3 rows/s, 32s left"
    assert progress.line("x", 100, 100_000, 10.0) == "x: 100 / 100,000 rows (0%), 10.0 rows/s, 2h46m left"


def test_a_stage_whose_stderr_is_a_file_draws_no_bar_of_any_library(tmp_path):
    """A tqdm bar (transformers' GGUF conversion draws one itself) would fill a log file with carriage returns."""
    script = (
        "from pathlib import Path\n"
        "from pairforge.common import stage\n"
        "with stage('index', Path('out')):\n"
        "    from tqdm.auto import tqdm\n"
        "    for _ in tqdm(range(3), desc='a library bar'): pass\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert "index finished" in done.stderr and "a library bar" not in done.stderr and "\r" not in done.stderr
