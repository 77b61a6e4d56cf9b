"""Whole-process measurements shared by the benchmarks: wall time and the peak memory of a process tree.

Peak memory is the largest sum of PSS (RSS where PSS is unreadable) over a process and all its descendants (Ray's
GCS, raylet, workers), sampled every `interval` seconds; PSS divides shared pages (the object store, libraries
mapped by several workers, a memory-mapped index) among the processes mapping them, so they count once.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def process_memory(proc: psutil.Process) -> int:
    """PSS of one process, or its RSS where PSS cannot be read; 0 once it has ended."""
    try:
        return proc.memory_full_info().pss
    except psutil.AccessDenied:
        return proc.memory_info().rss
    except psutil.Error:  # ended between listing and reading
        return 0


def process_tree(proc: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.Error):  # the root may have just ended
        return [proc, *proc.children(recursive=True)]
    return [proc]


def label(proc: psutil.Process) -> str:
    """A process's short name: Ray's title for its workers (`ray::EmbedBatch.run`, `ray::IDLE`, its agents), the
    module a `python -m` runs, else the script or program (`gcs_server`, `raylet`, a Ray monitor's file)."""
    try:
        command = proc.cmdline()
    except psutil.Error:
        return "(ended)"
    if not command:
        return proc.name()
    if command[0].startswith("ray::"):
        return command[0].split()[0]
    if "-m" in command[:-1]:
        return f"python -m {command[command.index('-m') + 1]}"
    scripts = [part for part in command[1:] if part.endswith(".py")]
    return Path(scripts[0] if scripts else command[0]).name


def by_label(tree: list[tuple[psutil.Process, int]]) -> dict[str, list]:
    """Where a sample's memory is, largest first: label -> [processes, MiB]."""
    found: dict[str, list] = {}
    for proc, memory in tree:
        entry = found.setdefault(label(proc), [0, 0.0])
        entry[0] += 1
        entry[1] += memory / 2**20
    return dict(sorted(found.items(), key=lambda item: -item[1][1]))


def describe(peak: dict[str, list]) -> str:
    """`by_label`'s result on one line: `2 x ray::EmbedBatch.run 1,481`, ..."""
    return ", ".join(f"{n} x {name} {mib:,.0f}" if n > 1 else f"{name} {mib:,.0f}" for name, (n, mib) in peak.items())


def kill_tree(proc: psutil.Process) -> None:
    """Kill a process this script started and everything under it, children first."""
    for p in reversed(process_tree(proc)):
        with contextlib.suppress(psutil.Error):
            p.kill()


def run_measured(cmd: list[str], cwd: Path, log_path: Path, limit: int | None = None, interval: float = 0.25) -> dict:
    """Run `cmd` to its end: wall time, peak summed PSS of its process tree (MiB), where that peak was (`by_label`),
    the most processes it had, and an error (None when it succeeded; a tree above `limit` bytes is killed)."""
    # Without RAY_ADDRESS the stages start their own local Ray, whose processes are in the measured tree.
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    peak, most, over, done, where = [0], [0], threading.Event(), threading.Event(), [{}]
    with open(log_path, "w") as log:
        started = time.perf_counter()
        proc = psutil.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)

        def sample() -> None:
            while not done.is_set():
                tree = [(p, process_memory(p)) for p in process_tree(proc)]
                total, most[0] = sum(memory for _, memory in tree), max(most[0], len(tree))
                if total > peak[0]:
                    peak[0], where[0] = total, by_label(tree)
                if limit and peak[0] > limit:
                    over.set()
                    kill_tree(proc)
                    return
                done.wait(interval)

        (sampler := threading.Thread(target=sample, daemon=True)).start()
        code = proc.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
    error = None
    if over.is_set():
        error = f"killed above the memory limit ({limit / 2**30:.1f} GiB)"
    elif code != 0:
        error = f"exit status {code}"
    if error:
        print(f"  {' '.join(cmd[1:3])}: {error}; log {log_path} ends:\n{log_path.read_text()[-2000:]}", flush=True)
    return {"wall_s": wall, "peak_mib": peak[0] / 2**20, "peak_by_process": where[0], "max_processes": most[0],
            "error": error}  # fmt: skip
