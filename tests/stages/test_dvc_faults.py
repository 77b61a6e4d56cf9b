"""Under `dvc repro`, as users run it: a stage failing on bad input, or killed at any point, keeps its previous
output (DVC deletes a stage's outputs before running it unless they are `persist`), and two runs at once end with
one refused by name and every output agreeing with its manifest."""

from __future__ import annotations

import fcntl
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pairforge.pipeline import artifacts
from tests.conftest import dvc, set_params
from tests.stages.test_crash import snapshot

EXPORT_OUTPUTS = [
    "data/export",
    "metrics/export.json",
    "metrics/headline.json",
    "plots/scores.csv",
    "plots/rejections.csv",
]
DATA_OUTPUTS = [
    "data/ingested",
    "data/pairs",
    "data/embeddings",
    "data/index",
    "data/mined",
    "data/generated",
    "data/filtered",
]


def dvc_repro(repo) -> subprocess.Popen:
    """Start `dvc repro` in its own process group (one SIGKILL takes the stage and its Ray with it)."""
    env = {**os.environ, "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env, start_new_session=True, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def repro(repo) -> tuple[int, str]:
    """Run `dvc repro` to its end: its exit status and what it printed."""
    process = dvc_repro(repo)
    printed, _ = process.communicate(timeout=900)
    return process.returncode, printed


def up_to_date(repo) -> bool:
    return "up to date" in dvc(repo, "status")


def outputs(repo, names) -> dict:
    return {name: snapshot(repo, name) for name in names}


@pytest.mark.slow
def test_bad_input_under_dvc_repro_keeps_every_previous_output(small_repro, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(small_repro[0], repo, symlinks=True)
    before = outputs(repo, DATA_OUTPUTS + EXPORT_OUTPUTS)
    source = yaml.safe_load((repo / "params.yaml").read_text())["ingest"]["source"]
    bad = shutil.copytree(source, tmp_path / "bad-source")
    lines = (bad / "corpus.jsonl").read_text().splitlines(keepends=True)
    (bad / "corpus.jsonl").write_text(lines[0] + '{"_id": "x1", "title": "no text"}\n' + "".join(lines[1:]))
    set_params(repo, ingest={"source": str(bad)})
    status, printed = repro(repo)
    assert status != 0
    assert f"{bad / 'corpus.jsonl'}, row 2, field 'text': missing field" in printed
    assert outputs(repo, DATA_OUTPUTS + EXPORT_OUTPUTS) == before, "DVC removed nothing; the stage wrote nothing"
    set_params(repo, ingest={"source": source})
    assert up_to_date(repo), "dvc.lock still describes the outputs on disk"


def holder(output) -> int | None:
    """The pid written in output's lock file by the stage that holds it, while that process lives."""
    lock = output.parent / f".{output.name}.lock"
    found = re.search(r"pid (\d+)", lock.read_text()) if lock.exists() else None
    if found is None:
        return None
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return None
    return int(found.group(1))


def stage_window(repo, output, before: int | None) -> tuple[subprocess.Popen, float]:
    """Start `dvc repro` and wait for its stage to take `output` (a holder other than `before`)."""
    process = dvc_repro(repo)
    deadline = time.monotonic() + 300
    while holder(output) in (None, before) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert holder(output) not in (None, before), "the stage holds its output while it runs"
    return process, time.monotonic()


@pytest.mark.slow
def test_a_stage_killed_at_random_points_under_dvc_repro_leaves_old_or_new_outputs_and_the_next_repro_finishes(
    small_repro, tmp_path
):
    """SIGKILL to `dvc repro` and its stage at a random point of the stage's run, twice (DVC's own bookkeeping after the
    stage is left out: DVC writes `dvc.lock` and `.dvc/tmp/rwlock` in place, so a kill there can corrupt DVC's
    files, not ours; the README says how to recover)."""
    previous = small_repro[0]
    reference = shutil.copytree(previous, tmp_path / "reference", symlinks=True)
    set_params(reference, export={"batch_size": 16})
    output = reference / "data/export"
    process, started = stage_window(reference, output, holder(output))
    while holder(output) is not None:
        time.sleep(0.005)
    held = time.monotonic() - started
    assert process.wait() == 0
    old, new = outputs(previous, EXPORT_OUTPUTS), outputs(reference, EXPORT_OUTPUTS)
    assert old != new
    for seed in (1, 2):
        delay = random.Random(seed).uniform(0.05, 1.0) * held
        repo = shutil.copytree(previous, tmp_path / f"killed-{seed}", symlinks=True)
        set_params(repo, export={"batch_size": 16})
        output = repo / "data/export"
        process, started = stage_window(repo, output, holder(output))
        while time.monotonic() < started + delay and holder(output) is not None:
            time.sleep(0.005)
        if holder(output) is not None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for name, seen in outputs(repo, EXPORT_OUTPUTS).items():
            assert seen in (old[name], new[name]), f"{name} after a kill at {delay:.2f} s is neither whole"
        status, printed = repro(repo)
        assert status == 0, printed
        assert outputs(repo, EXPORT_OUTPUTS) == new, "the next repro writes the uninterrupted run's bytes"
        assert up_to_date(repo)


def locked(path) -> bool:
    """Whether a process holds the writer's lock of output `path` (the test peeks without taking it for long)."""
    lock = path.parent / f".{path.name}.lock"
    if not lock.exists():
        return False
    with open(lock, "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


@pytest.mark.slow
def test_two_runs_at_once_one_is_refused_by_name_and_no_manifest_disagrees_with_its_parts(small_repro, tmp_path):
    repo = shutil.copytree(small_repro[0], tmp_path / "repo", symlinks=True)
    set_params(repo, filter={"duplicate_cosine": 0.6})
    release = tmp_path / "release"
    # The first run is the real stage, paused at its most fragile point (parts written, not yet swapped in) until
    # the second has come and gone.
    paused = f"""
import pathlib, runpy, time
from pairforge.pipeline import artifacts
seal = artifacts.ArtifactWriter.seal
def paused_seal(self):
    deadline = time.monotonic() + 300
    while not pathlib.Path({str(release)!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return seal(self)
artifacts.ArtifactWriter.seal = paused_seal
runpy.run_module("pairforge.filter", run_name="__main__")
"""
    first = subprocess.Popen([sys.executable, "-c", paused], cwd=repo, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((repo / "data").glob(".filtered.tmp-*")) and time.monotonic() < deadline:
        assert first.poll() is None, "the first run ended before it could be met"
        time.sleep(0.05)
    assert locked(repo / "data/filtered"), "the first run holds its output from its start to its swap"
    status, printed = repro(repo)  # DVC runs the filter stage beside it: refused at once, before any work
    release.touch()
    assert status != 0, printed
    assert f"data/filtered: being written by host {os.uname().nodename}, pid {first.pid}" in printed
    assert first.wait() == 0, first.stderr.read()
    for manifest in (repo / "data").rglob("_manifest.json"):
        if (manifest.parent / "part-00000.parquet").exists():  # every artifact's parts agree with its manifest
            artifacts.read(manifest.parent)
    assert not locked(repo / "data/filtered"), "the lock went with its holder"
