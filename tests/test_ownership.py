"""Two runs at once never corrupt data: one writer per output folder, temporary files removed only when their
owner is gone, readers that refuse a folder disagreeing with its manifest, symlinked outputs kept, fsync."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pytest

from pairforge.pipeline import artifacts, ownership, shard_cache
from pairforge.pipeline.schema import InputError


def write(path, values, rows_per_part=2):
    with artifacts.ArtifactWriter(path, {"p": 1}, rows_per_part=rows_per_part) as out:
        out.write("numbers", pa.table({"n": values}))


def start(script: str, ready) -> subprocess.Popen:
    """A Python process running `script`, once `ready()` holds (it printed or made what the test waits for)."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=os.getcwd())
    deadline = time.monotonic() + 60
    while not ready():
        assert process.poll() is None and time.monotonic() < deadline, "the helper process ended or never got ready"
        time.sleep(0.02)
    return process


def test_a_second_writer_is_refused_while_the_first_writes_and_the_first_completes(tmp_path):
    out = tmp_path / "out"
    write(out, [1, 2])
    slow = start(
        f"""
        import time, pyarrow as pa
        from pairforge.pipeline import artifacts
        with artifacts.ArtifactWriter({str(out)!r}, rows_per_part=1) as out:
            for i in range(10):
                out.write("numbers", pa.table({{"n": [i]}}))
                time.sleep(0.1)
        """,
        lambda: list(tmp_path.glob(".out.tmp-*/numbers/part-*.parquet")),
    )
    with pytest.raises(ownership.Busy, match=rf"out: being written by host .*pid {slow.pid}"):
        write(out, [7, 8, 9])
    assert slow.wait() == 0
    assert artifacts.read(out / "numbers")["n"].to_pylist() == list(range(10))
    assert artifacts.manifest(out / "numbers")["rows"] == 10
    write(out, [7, 8, 9])  # the lock went with its holder
    assert artifacts.read(out / "numbers")["n"].to_pylist() == [7, 8, 9]


@pytest.mark.parametrize("damage", ["a part removed", "a part replaced", "a part added", "the manifest removed"])
def test_a_reader_refuses_a_folder_that_disagrees_with_its_manifest(tmp_path, damage):
    write(tmp_path / "out", [1, 2, 3, 4, 5])
    folder = tmp_path / "out" / "numbers"
    assert artifacts.read(folder).num_rows == 5
    if damage == "a part removed":
        (folder / "part-00002.parquet").unlink()
    elif damage == "a part replaced":
        (folder / "part-00001.parquet").write_bytes((folder / "part-00000.parquet").read_bytes())
    elif damage == "a part added":
        (folder / "part-00003.parquet").write_bytes((folder / "part-00000.parquet").read_bytes())
    else:
        (folder / "_manifest.json").unlink()
    message = "no manifest" if damage == "the manifest removed" else "the manifest says 5 rows in 3 parts"
    with pytest.raises(InputError, match=rf"{folder}: {message}"):
        artifacts.read(folder)
    with pytest.raises(InputError):
        next(artifacts.iter_batches(folder, 10))


@pytest.mark.parametrize("target_exists", [True, False])
def test_a_symlinked_output_folder_stays_a_link_run_after_run(tmp_path, target_exists):
    elsewhere = tmp_path / "big-disk" / "numbers-out"
    if target_exists:
        elsewhere.mkdir(parents=True)
    (tmp_path / "project").mkdir()
    link = tmp_path / "project" / "out"
    link.symlink_to(elsewhere, target_is_directory=True)
    for values in ([1, 2], [3, 4, 5], [6]):
        write(link, values)
        assert link.is_symlink() and os.readlink(link) == str(elsewhere)
        assert artifacts.read(link / "numbers")["n"].to_pylist() == values
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["out"]


def test_a_cache_leaves_a_live_owners_temporary_shard_and_sweeps_a_dead_ones(tmp_path):
    cache = shard_cache.TableCache(tmp_path, {"model": "m"})
    owner = start(
        f"""
        import time
        from pairforge.pipeline import ownership
        ownership.temp({str(cache.folder)!r}, "shard-x.parquet").write_bytes(b"half written")
        open({str(tmp_path / "ready")!r}, "w").close()
        time.sleep(600)
        """,
        (tmp_path / "ready").exists,
    )
    (in_flight,) = cache.folder.glob(".tmp-*")
    shard_cache.TableCache(tmp_path, {"model": "m"})  # a second user of the cache starts
    assert in_flight.read_bytes() == b"half written", "a live writer's temporary shard is left alone"
    owner.kill()
    owner.wait()
    shard_cache.TableCache(tmp_path, {"model": "m"})
    assert not list(cache.folder.glob(".tmp-*"))
    assert [p.name for p in cache.folder.glob(".owner-*")] == [f".owner-{ownership.owner()}.lock"], "only ours"


def test_parts_folders_and_the_parent_are_fsynced_before_and_after_the_swap(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(descriptor):  # the real fsync runs; the spy notes what it was given
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real(descriptor)

    monkeypatch.setattr(os, "fsync", spy)
    write(tmp_path / "out", [1, 2, 3])
    names = {os.path.relpath(path, tmp_path) for path in synced}
    tmp = next(n.split("/")[0] for n in names if n.startswith(".out.tmp-"))
    for inside in (
        "",
        "/numbers",
        "/numbers/part-00000.parquet",
        "/numbers/part-00001.parquet",
        "/numbers/_manifest.json",
    ):
        assert tmp + inside in names, f"{tmp + inside} fsynced before the swap"
    assert "." in names, "the parent folder fsynced after the rename"
    cache = shard_cache.TableCache(tmp_path / "cache", {"model": "m"})
    synced.clear()
    cache.add(pa.table({"key": np.array([1, 2], np.uint64), "value": [1.0, 2.0]}))
    assert any(".tmp-" in path for path in synced) and str(cache.folder) in synced
