"""What the tests of the scripts in benchmarks/ share: running a script as its user does, in its own process from
the repository root, and reading the figures of the table it printed."""

from __future__ import annotations

import math
import subprocess
import sys

from tests.conftest import REPO


def run(script: str, *flags: str) -> str:
    """What benchmarks/`script` printed with these flags; the test fails, with the end of its output, unless the
    script exits 0."""
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *flags], cwd=REPO, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def figures(printed: str, *label: str) -> list[float]:
    """The figures of the last printed table row whose first words are `label`'s: every word after them is a
    number (a "±" between two aside), and each must be finite."""
    words = " ".join(label).split()
    rows = []
    for line in printed.splitlines():
        tokens = line.split()
        if tokens[: len(words)] != words or len(tokens) == len(words):
            continue
        try:
            rows.append([float(token) for token in tokens[len(words) :] if token != "±"])
        except ValueError:  # a line of prose that starts with the same words, not a row of the table
            continue
    assert rows, f"no table row starts with {words}:\n{printed[-3000:]}"
    assert all(math.isfinite(value) for value in rows[-1]), (words, rows[-1])
    return rows[-1]
