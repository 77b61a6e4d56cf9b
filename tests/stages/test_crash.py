"""Crashes: every stage SIGKILLed (with its local Ray) at random points, several seeds each. Right after the kill
each output is byte for byte the previous complete one or the new complete one, never partial; the re-run then
writes exactly the bytes of an uninterrupted run."""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path

import pytest

from pairforge.pipeline import artifacts
from tests.conftest import STAGES, kill_after, run_stage, set_params

SEEDS = (1, 2)
# Per stage: a param change that changes its output (so "previous" and "new" differ), and what it writes.
CHANGES = {
    "ingest": {"ingest": {"max_queries": 15}},
    # Two queries written one per task and cache shard: a kill lands between checkpoints.
    "pairs": {
        "pairs": {
            "styles": ["question"],
            "max_items": 2,
            "batch_size": 1,
            "checkpoint_rows": 1,
            "llm_max_new_tokens": 32,
        }
    },  # fmt: skip
    "embed": {"embed": {"max_length": 64}},
    "index": {"index": {"topics": 3}},
    "mine": {"mine": {"num_negatives": 2}},
    "generate": {"generate": {"rules": ["negation_insert", "number_change"]}},
    "export": {"export": {"batch_size": 16}},
}
OUTPUTS = {
    "ingest": ["data/ingested"],
    "pairs": ["data/pairs"],
    "embed": ["data/embeddings"],
    "index": ["data/index"],
    "mine": ["data/mined"],
    "generate": ["data/generated"],
    "filter": ["data/filtered"],
    "export": [
        "data/export",
        "metrics/export.json",
        "metrics/headline.json",
        "plots/scores.csv",
        "plots/rejections.csv",
    ],
}


def _scrubbed(value):
    """A manifest without wall-clock timings (the one thing two identical runs may differ in)."""
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value


def snapshot(project: Path, output: str) -> dict[str, bytes] | None:
    """Every file of an output as a reader sees it (after `recover`), or None when there is none."""
    path = project / output
    artifacts.recover(path)
    if not path.exists():
        return None
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    found = {}
    for file in files:
        data = file.read_bytes()
        if file.name == artifacts.MANIFEST:
            data = json.dumps(_scrubbed(json.loads(data)), sort_keys=True).encode()
        found[str(file.relative_to(project))] = data
    return found


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in STAGES if name != "filter"])  # filter: with a judge, below
def test_stage_killed_at_random_points_leaves_old_or_new_output_and_reruns_to_the_same_bytes(
    small_repro, tmp_path, name
):
    """Kill the stage at one random point, then again at another (the second run finds what the first left in
    the caches), then re-run it to the end: the bytes of the uninterrupted run."""
    killed_and_rerun(small_repro[0], tmp_path, name, CHANGES[name])


@pytest.mark.slow
def test_the_filter_killed_while_its_judge_scores_resumes_to_the_same_bytes(small_repro, cross_encoder_dir, tmp_path):
    """The filter with a cross-encoder judge, killed while it scores (its answers checkpointed into the judge's
    cache as they arrive), then re-run: the uninterrupted run's bytes. Then a threshold change scores nothing
    it scored before: only the candidates its refills newly reach."""
    change = {"filter": {"cross_encoder": str(cross_encoder_dir), "ce_relative": 0.9, "checkpoint_rows": 8}}
    work = killed_and_rerun(small_repro[0], tmp_path, "filter", change, seeds=SEEDS[:1])
    before = scored_pairs(work)
    set_params(work, filter={"ce_relative": 0.75})
    log = run_stage(work, "filter").stderr
    computed = sum(int(n) for n in re.findall(r"CrossEncoderBatch: \d+ rows, (\d+) computed now", log))
    now = scored_pairs(work)
    assert computed == len(now - before) and now != before, "the lower threshold rejected more and refilled"


def scored_pairs(project: Path) -> set[tuple[str, str]]:
    judged = artifacts.read(project / "data/filtered/judged", ["query_id", "doc_id", "scores"]).to_pylist()
    return {(r["query_id"], r["doc_id"]) for r in judged if "cross_encoder.ce" in dict(r["scores"])}


def killed_and_rerun(previous: Path, tmp_path: Path, name: str, change: dict, seeds: tuple = SEEDS) -> Path:
    """Run stage `name` of `previous` with `change` uninterrupted, then killed at a random point per seed (old or
    new output each time), then to the end (the uninterrupted bytes); returns the project killed and re-run."""
    reference = tmp_path / "uninterrupted"
    shutil.copytree(previous, reference, symlinks=True)
    set_params(reference, **change)
    started = time.monotonic()
    run_stage(reference, name)
    duration = time.monotonic() - started
    old = {output: snapshot(previous, output) for output in OUTPUTS[name]}
    new = {output: snapshot(reference, output) for output in OUTPUTS[name]}
    assert old != new, "the param change must change the output, or old and new can't be told apart"
    work = tmp_path / "killed"
    shutil.copytree(previous, work, symlinks=True)
    set_params(work, **change)
    for seed in seeds:
        # Past the first quarter (interpreter start and imports), anywhere up to the end: in the work, in the
        # writes, in the swap. A run faster than the reference is tried again with a shorter fuse.
        delay = random.Random(f"{name}-{seed}").uniform(0.25, 1.0) * duration
        attempt = tmp_path / "attempt"
        shutil.copytree(work, attempt, symlinks=True)
        while not kill_after(attempt, name, delay):  # it finished first: again, from the same state, sooner
            assert delay > duration / 32, f"{name} always finished before its kill: nothing was interrupted"
            delay /= 2
            shutil.rmtree(attempt)
            shutil.copytree(work, attempt, symlinks=True)
        shutil.rmtree(work)
        attempt.rename(work)
        for output in OUTPUTS[name]:
            seen = snapshot(work, output)
            assert seen in (old[output], new[output]), f"{output} after a kill at {delay:.1f} s is neither whole"
    run_stage(work, name)
    assert {output: snapshot(work, output) for output in OUTPUTS[name]} == new
    return work
