"""Artifacts are written atomically: a failed or killed writer leaves the previous complete artifact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pytest

from pairforge.pipeline import artifacts


def write(path, values, rows_per_part=2):
    with artifacts.ArtifactWriter(path, {"p": 1}, rows_per_part=rows_per_part) as out:
        out.write("numbers", pa.table({"n": values}))


def test_parts_manifest_and_content_hash(tmp_path):
    write(tmp_path / "out", [1, 2, 3, 4, 5])
    folder = tmp_path / "out" / "numbers"
    assert sorted(p.name for p in folder.iterdir()) == [
        "_manifest.json",
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00002.parquet",
    ]
    manifest = artifacts.manifest(folder)
    assert manifest["rows"] == 5 and manifest["parts"] == 3
    assert artifacts.read(folder)["n"].to_pylist() == [1, 2, 3, 4, 5]
    write(tmp_path / "again", [1, 2, 3, 4, 5])
    assert artifacts.manifest(tmp_path / "again" / "numbers")["content_hash"] == manifest["content_hash"]
    write(tmp_path / "other", [1, 2, 3, 4, 6])
    assert artifacts.manifest(tmp_path / "other" / "numbers")["content_hash"] != manifest["content_hash"]


def test_streamed_groups_are_whole_and_selection_finds_rows_across_parts(tmp_path):
    keys = ["a"] * 3 + ["b"] + ["c"] * 4 + ["d"] * 2 + ["e"]
    with artifacts.ArtifactWriter(tmp_path / "out", {"p": 1}, rows_per_part=3) as out:
        out.write("rows", pa.table({"key": keys, "n": list(range(len(keys)))}))
    folder = tmp_path / "out" / "rows"
    for groups, batch_size in [(1, 1), (2, 2), (2, 5), (3, 100)]:
        tables = list(artifacts.iter_groups(folder, "key", groups, batch_size))
        assert pa.concat_tables(tables)["n"].to_pylist() == list(range(len(keys))), "every row once, in order"
        seen = [sorted(set(t["key"].to_pylist())) for t in tables]
        assert all(len(s) <= groups for s in seen) and all(len(s) == groups for s in seen[:-1])
        assert len({k for s in seen for k in s}) == sum(map(len, seen)), "no group is split between tables"
    found = artifacts.select(folder, "key", pa.array(["c", "e", "z"]), ["key", "n"])
    assert found["n"].to_pylist() == [4, 5, 6, 7, 10]
    assert artifacts.select(folder, "key", pa.array(["z"])).num_rows == 0


def test_an_empty_artifact_still_has_its_schema(tmp_path):
    write(tmp_path / "out", pa.array([], pa.int64()))
    table = artifacts.read(tmp_path / "out" / "numbers")
    assert table.num_rows == 0 and table.schema.field("n").type == pa.int64()


def test_an_exception_inside_the_writer_keeps_the_old_artifact(tmp_path):
    write(tmp_path / "out", [1, 2])
    with pytest.raises(RuntimeError), artifacts.ArtifactWriter(tmp_path / "out") as out:
        out.write("numbers", pa.table({"n": [9, 9, 9]}))
        raise RuntimeError("stage failed half way")
    assert artifacts.read(tmp_path / "out" / "numbers")["n"].to_pylist() == [1, 2]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".out.lock", "out"], "no temporary folder is left behind (the writer's lock file stays)"


def test_a_swap_interrupted_between_its_renames_is_recovered(tmp_path):
    write(tmp_path / "out", [1, 2])
    os.rename(tmp_path / "out", tmp_path / ".out.old")  # what a kill between the two renames leaves
    assert artifacts.read(tmp_path / "out" / "numbers")["n"].to_pylist() == [1, 2]


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_a_writer_killed_mid_write_leaves_the_old_artifact_and_a_rerun_completes(tmp_path, delay):
    write(tmp_path / "out", [1, 2])
    before = artifacts.manifest(tmp_path / "out" / "numbers")
    script = textwrap.dedent(
        f"""
        import time, pyarrow as pa
        from pairforge.pipeline import artifacts
        with artifacts.ArtifactWriter({str(tmp_path / "out")!r}, rows_per_part=1) as out:
            for i in range(100):
                out.write("numbers", pa.table({{"n": [i]}}))
                time.sleep(0.05)
        """
    )
    writer = subprocess.Popen([sys.executable, "-c", script])
    # `delay` counts from its first part: the interpreter's start and imports take a varying second or so.
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".out.tmp-*/**/part-*.parquet")) and time.monotonic() < deadline:
        assert writer.poll() is None, "the writer ended before writing"
        time.sleep(0.01)
    time.sleep(delay)
    assert writer.poll() is None, "the writer is still writing when it is killed"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir()), "it died with a half-written folder"
    assert artifacts.manifest(tmp_path / "out" / "numbers") == before
    assert artifacts.read(tmp_path / "out" / "numbers")["n"].to_pylist() == [1, 2]
    write(tmp_path / "out", [7, 8, 9])
    assert artifacts.read(tmp_path / "out" / "numbers")["n"].to_pylist() == [7, 8, 9]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".out.lock", "out"], "the rerun cleans the stale temporary folder"
    assert json.loads((tmp_path / "out" / "numbers" / "_manifest.json").read_text())["rows"] == 3
