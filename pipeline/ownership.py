"""Who may write where, so that two runs at once (a `pairforge run` beside `dvc repro`, several machines filling one
cache on a shared filesystem) never corrupt each other's files.

- An output folder has one writer at a time: `exclusive(path)` holds a lock file beside it (`.NAME.lock`) and
  refuses, naming the holder, while another process holds it.
- A temporary file is named by its owner (`.tmp-<owner>-NAME`, the owner being host, pid and a random token) and
  the owner holds a lock on `.owner-<owner>.lock` in the same folder for as long as it lives. `sweep` removes the
  temporary files of owners that are gone (their lock is free) and leaves those of live owners alone.

The locks are `flock` locks: the kernel drops them when their process dies (SIGKILL included), and Linux passes them
to the server on NFS, so they hold across machines on a shared filesystem.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

_owners: dict[int, str] = {}  # pid -> this process's name in temporary files (a forked child gets its own)
_claims: dict[tuple[int, Path], int] = {}  # (pid, folder) -> descriptor of the owner lock held there until exit
_held: dict[tuple[int, Path], int] = {}  # (pid, path) -> depth of the `exclusive` blocks this process is in


def owner() -> str:
    """Host and pid say whose a temporary file is; the token tells apart two processes that got one pid in turn."""
    pid = os.getpid()
    if pid not in _owners:
        _owners[pid] = f"{socket.gethostname().replace('-', '_')}_{pid}_{secrets.token_hex(4)}"
    return _owners[pid]


class Busy(RuntimeError):
    """Another live process holds the lock."""


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the writer's lock of `path` (a folder or file) for the block; Busy, naming the holder, when another
    process holds it. Re-entrant within a process (a stage holds its output's lock, its writer takes it again)."""
    path = Path(os.path.realpath(path))
    key = (os.getpid(), path)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    lock = path.parent / f".{path.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip() or "another process"
            raise Busy(f"{path}: being written by {holder}; wait for that run to finish (or stop it)") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"host {socket.gethostname()}, pid {os.getpid()}, since {time.ctime()}".encode(), 0)
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        os.close(descriptor)  # closing drops the lock; the file stays, so its inode is the one every process locks


def temp(folder: Path, name: str) -> Path:
    """A temporary path in `folder` for `name`, owned by this process until it exits."""
    folder = Path(folder)
    me = owner()
    while (os.getpid(), folder) not in _claims:
        lock = folder / f".owner-{me}.lock"
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        # A sweep may have taken the fresh file for a dead owner's and removed it before we locked it: lock again.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lock).st_ino == os.fstat(descriptor).st_ino:
                _claims[os.getpid(), folder] = descriptor
                break
        os.close(descriptor)
    return folder / f".tmp-{me}-{name}"


def sweep(folder: Path) -> None:
    """Remove the temporary files in `folder` whose owner is gone (a killed writer's leftovers)."""
    folder = Path(folder)
    for lock in folder.glob(".owner-*.lock"):
        gone = lock.name[len(".owner-") : -len(".lock")]
        if gone == owner():
            continue
        with contextlib.suppress(FileNotFoundError), open(lock, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive
            _remove(folder.glob(f".tmp-{gone}-*"))
            lock.unlink(missing_ok=True)
    # A temporary file whose owner lock is gone was left by a sweep killed between the two steps above (an owner
    # takes its lock before it makes any temporary file).
    # Temporary files are listed before owners: any owner of one listed had its lock by then.
    temporary = list(folder.glob(".tmp-*"))
    owners = {lock.name[len(".owner-") : -len(".lock")] for lock in folder.glob(".owner-*.lock")}
    _remove(p for p in temporary if p.name[len(".tmp-") :].split("-", 1)[0] not in owners)


def _remove(paths) -> None:
    for path in paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
