"""benchmarks/cross_encoder.py on the session's judge, so that a change of the scorer that loads what it builds
fails here: it finds the judge built with its settings, scores STS-B dev pairs with it and prints their Spearman
correlation with the gold scores."""

from __future__ import annotations

import json
import re

import pytest

from benchmarks.cross_encoder import MARKER
from tests.benchmarks.tiny import run
from tests.conftest import DATASETS


@pytest.mark.slow
def test_the_cross_encoder_benchmark_reuses_its_judge_and_scores_dev_pairs(cross_encoder_dir):
    # The judge other tests use, with the settings it was built with: reused, not built again (a build is that
    # fixture's cost, shared by the session); 64 dev pairs of 1,500 are scored in a second or two.
    built = json.loads((cross_encoder_dir / MARKER).read_text())
    flags = [f"--{name}={built[name]}" for name in ("pairs", "epochs", "seed")]
    flags += [f"--learning-rate={built['learning_rate']}", "--datasets", str(DATASETS), "--dev-pairs", "64"]
    printed = run("cross_encoder.py", str(cross_encoder_dir), *flags)
    assert re.search(r"^model: .* \(reused in [\d.]+ s, \d+ threads\)$", printed, re.MULTILINE), printed
    found = re.search(r"^STS-B dev: Spearman (\S+) over 64 pairs, scored in [\d.]+ s$", printed, re.MULTILINE)
    assert found and 0.5 < float(found[1]) <= 1, printed  # the judge is 0.80 on all of dev
