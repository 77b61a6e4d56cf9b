"""benchmarks/faults.py on a tiny sample: a failing endpoint's items end pending, are asked again round by round
until none is left, and end as a healthy endpoint's would; an endpoint that is down is named."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_the_faults_benchmark_ends_with_nothing_pending_and_nothing_rejected_for_the_endpoint():
    # One request at a time: the seeded faults then fall on the same items every run (here, some of round 1's).
    script = [sys.executable, "benchmarks/faults.py", "--items", "3", "--fault-rate", "0.65", "--max-new-tokens",
              "24", "--concurrency", "1", "--timeout-s", "3", "--retry-after-s", "0"]  # fmt: skip
    done = subprocess.run(script, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    rounds = re.findall(r"^round (\d+): asked (\d+), ended (.*)$", done.stdout, re.MULTILINE)
    assert len(rounds) >= 2 and "'pending'" in rounds[0][2], done.stdout
    assert "'pending'" not in rounds[-1][2] and rounds[0][1] == "3"
    assert "equals a run against a healthy server: True" in done.stdout
    assert "endpoint down: the endpoint http://127.0.0.1:" in done.stdout
