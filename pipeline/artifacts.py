"""Artifact folders: `part-*.parquet` plus `_manifest.json`, written atomically.

A stage builds its whole output folder under a temporary sibling name and swaps it into place only when every
part and manifest is on disk (fsynced, folders included). A stage killed at any point therefore leaves the
previous complete folder (or, if it died in the instant between the two renames of the swap, the previous folder
under `.NAME.old`, which the next read or write puts back). One writer at a time holds the folder's lock
(`pipeline.ownership`); a second is refused, naming the first. Readers check the parts against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pairforge.pipeline import ownership
from pairforge.pipeline.schema import SCHEMA_VERSION, InputError

MANIFEST = "_manifest.json"


def _old(path: Path) -> Path:
    return path.parent / f".{path.name}.old"


def recover(path: Path) -> None:
    """Put back a previous folder that a swap interrupted between its two renames (never while a live writer is
    between them: that writer finishes its own swap)."""
    path = Path(path)
    if path.exists() or not _old(path).exists():
        return
    for _ in range(100):
        try:
            with ownership.exclusive(path):
                _recover(path)
            return
        except ownership.Busy:
            time.sleep(0.05)
            if path.exists():
                return


def _recover(path: Path) -> None:
    if not path.exists() and _old(path).exists():
        os.rename(_old(path), path)


def _fsync(path: Path) -> None:
    """Every file and folder under `path`, and `path` itself, on disk (durable after a power loss)."""
    for item in sorted(path.rglob("*"), reverse=True) if path.is_dir() else []:
        _fsync_one(item)
    _fsync_one(path)


def _fsync_one(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(final: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp_path)`, fsync, then rename to `final`: readers see the whole file (or folder) or none of it.
    The temporary path is this process's own (`ownership.temp`), so writers beside it are never disturbed."""
    final = _real(final)
    tmp = ownership.temp(final.parent, final.name)
    write(tmp)
    _fsync(tmp)
    os.rename(tmp, final)
    _fsync_one(final.parent)


def write_text_atomically(final: Path, text: str) -> None:
    """A single file (metrics, plots, a report) replaced whole; a killed writer leaves the previous one."""
    final = _real(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    ownership.sweep(final.parent)  # what writers killed mid-write left
    write_atomically(final, lambda tmp: tmp.write_text(text))


def _real(path: str | Path) -> Path:
    """Where a path really is: a symlinked output is written at its target, so the link stays a link."""
    return Path(os.path.realpath(path))


def params_hash(params: object) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def fingerprint(path: Path) -> str:
    """Content hash of an artifact folder (from its manifest) or of a plain input file or folder."""
    path = Path(path)
    recover(path)
    if (path / MANIFEST).exists():
        return json.loads((path / MANIFEST).read_text())["content_hash"]
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(file_fingerprint(child).encode())
        return digest.hexdigest()[:16]
    return file_fingerprint(path)


class ArtifactWriter:
    """Writes one stage output folder (holding one or more artifacts) atomically.

    Use as a context manager: parts are written into a temporary sibling folder, and the folder replaces `path`
    only when the `with` block finishes without an exception.
    """

    def __init__(
        self, path: str | Path, params: object = None, inputs: dict[str, str] | None = None, rows_per_part: int = 50_000
    ):
        self.path = _real(path)
        self.rows_per_part = rows_per_part
        self._buffers: dict[str, list[pa.Table]] = {}
        self.params_hash = params_hash(params)
        self.inputs = inputs or {}
        self.tmp = self.path.parent / f".{self.path.name}.tmp-{os.getpid()}"
        self._parts: dict[str, int] = {}
        self._rows: dict[str, int] = {}
        self._schemas: dict[str, pa.Schema] = {}
        self._sealed: dict[str, dict] | None = None
        self._info: dict[str, dict] = {}

    def __enter__(self) -> ArtifactWriter:
        self._lock = ownership.exclusive(self.path)
        self._lock.__enter__()  # one writer at a time; it alone makes `.NAME.tmp-*`, so any found here is stale
        try:
            _recover(self.path)
            for stale in self.path.parent.glob(f".{self.path.name}.tmp-*"):
                shutil.rmtree(stale, ignore_errors=True)
            self.tmp.mkdir()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self

    def write(self, name: str, table: pa.Table, schema: pa.Schema | None = None) -> None:
        """Append rows to artifact `name` (a sub-folder); parts of `rows_per_part` rows are flushed as they fill."""
        if self._sealed is not None:
            raise RuntimeError(f"artifact {name!r}: written after seal()")
        schema = schema or table.schema
        if name in self._schemas and not self._schemas[name].equals(schema, check_metadata=False):
            raise ValueError(f"artifact {name!r}: schema {schema} differs from the first rows' {self._schemas[name]}")
        self._schemas.setdefault(name, schema)
        self._buffers.setdefault(name, []).append(table.cast(self._schemas[name]))
        self._rows[name] = self._rows.get(name, 0) + table.num_rows
        if sum(t.num_rows for t in self._buffers[name]) >= self.rows_per_part:
            self._flush(name, final=False)

    def _flush(self, name: str, final: bool) -> None:
        buffered = pa.concat_tables(self._buffers.pop(name, None) or [self._schemas[name].empty_table()])
        folder = self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        index = self._parts.get(name, 0)
        while buffered.num_rows >= self.rows_per_part or (final and buffered.num_rows):
            pq.write_table(buffered.slice(0, self.rows_per_part), folder / f"part-{index:05d}.parquet")
            buffered = buffered.slice(self.rows_per_part)
            index += 1
        if final and index == 0:  # an empty artifact still gets one empty part, so readers find its schema
            pq.write_table(buffered, folder / "part-00000.parquet")
            index = 1
        self._parts[name] = index
        if buffered.num_rows:
            self._buffers[name] = [buffered]

    def write_text(self, relpath: str, text: str) -> None:
        target = self.tmp / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def describe(self, name: str, **info: object) -> None:
        """Facts about artifact `name` for its manifest (e.g. the index chosen and its measured recall).

        They are not part of the content hash: they describe the rows, they are not rows.
        """
        self._info.setdefault(name, {}).update(info)

    def rows(self, name: str) -> int:
        return self._rows.get(name, 0)

    def _manifest(self, name: str) -> dict:
        folder = self.tmp / name
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "rows": self._rows[name],
            "parts": self._parts[name],
            "columns": self._schemas[name].names,
            "params_hash": self.params_hash,
            "inputs": self.inputs,
            "content_hash": _content_hash(folder),
            **self._info.get(name, {}),
        }
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        return manifest

    def seal(self) -> dict[str, dict]:
        """Flush every artifact and write its manifest (before the swap); returns the manifests by name."""
        if self._sealed is None:
            self._sealed = {}
            for name in self._schemas:
                self._flush(name, final=True)
                self._sealed[name] = self._manifest(name)
        return self._sealed

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)
                return
            self.seal()
            _fsync(self.tmp)
            old = _old(self.path)
            shutil.rmtree(old, ignore_errors=True)
            if self.path.exists():
                os.rename(self.path, old)
            os.rename(self.tmp, self.path)
            _fsync_one(self.path.parent)
            shutil.rmtree(old, ignore_errors=True)
        finally:
            self._lock.__exit__(None, None, None)


def _content_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for part in sorted(folder.glob("part-*.parquet")):
        digest.update(part.name.encode())
        digest.update(file_fingerprint(part).encode())
    return digest.hexdigest()[:16]


_verified: dict[Path, tuple] = {}  # folder -> the (name, size, mtime) of its files when last verified


def parts(path: str | Path) -> list[Path]:
    """The parts of a complete artifact, in order, after checking them against its manifest (their number, their
    rows and their content hash): a folder that disagrees with its manifest is refused, never read in part."""
    path = Path(path)
    recover(path.parent if not path.exists() else path)
    found = sorted(path.glob("part-*.parquet"))
    if not (path / MANIFEST).exists():
        if found or path.exists():
            raise InputError(str(path), None, None, "no manifest: not a complete artifact (re-run its stage)")
        raise FileNotFoundError(f"{path}: no artifact here (run the stage that writes it first)")
    state = tuple((p.name, *_size_and_time(p)) for p in [path / MANIFEST, *found])
    if _verified.get(path) != state:
        told = manifest(path)
        rows = sum(pq.ParquetFile(part).metadata.num_rows for part in found)
        names = [f"part-{i:05d}.parquet" for i in range(told["parts"])]
        if [p.name for p in found] != names or rows != told["rows"] or _content_hash(path) != told["content_hash"]:
            raise InputError(
                str(path), None, None,
                f"the manifest says {told['rows']} rows in {told['parts']} parts (content {told['content_hash']}), "
                f"the folder holds {rows} rows in {len(found)} parts that do not match it: refused (re-run its stage)",
            )  # fmt: skip
        _verified[path] = state
    return found


def _size_and_time(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def read(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """The whole artifact as one table (parts in order; the manifest's schema metadata kept)."""
    return pa.concat_tables(pq.read_table(part, columns=columns) for part in parts(path))


def iter_batches(path: str | Path, batch_size: int, columns: list[str] | None = None) -> Iterator[pa.Table]:
    """Stream an artifact without holding it whole."""
    for part in parts(path):
        for batch in pq.ParquetFile(part).iter_batches(batch_size=batch_size, columns=columns):
            yield pa.Table.from_batches([batch])


def select(path: str | Path, key: str, values: pa.Array, columns: list[str] | None = None) -> pa.Table:
    """The rows whose `key` is among `values`, in artifact order, found by streaming the artifact."""
    found = [batch.filter(pc.is_in(batch[key], values)) for batch in iter_batches(path, 65_536, columns)]
    return pa.concat_tables(found) if found else read(path, columns).slice(0, 0)


def iter_groups(path: str | Path, key: str, groups: int, batch_size: int = 65_536) -> Iterator[pa.Table]:
    """Stream an artifact whose rows come grouped by `key` (each key's rows together) in tables of whole groups,
    at most `groups` keys each."""
    held = None
    for batch in iter_batches(path, batch_size):
        held = batch if held is None else pa.concat_tables([held, batch])
        keys = held[key].combine_chunks()
        starts = np.flatnonzero(pc.not_equal(keys[1:], keys[:-1]).to_numpy(zero_copy_only=False)) + 1
        # Cut only before a group that has a successor: the last group held may go on in the next batch.
        while len(starts) >= groups:
            cut = int(starts[groups - 1])
            yield held.slice(0, cut)
            held, starts = held.slice(cut), starts[groups:] - cut
    if held is not None and held.num_rows:
        yield held


def manifest(path: str | Path) -> dict:
    return json.loads((Path(path) / MANIFEST).read_text())


def summary(folder: Path) -> str:
    """The artifacts a stage wrote under `folder`, one line each (rows, parts, content hash): the table a stage's
    log ends with. Read from their manifests: what the files say, not what the stage meant to write."""
    found = []
    for path in sorted(Path(folder).rglob(MANIFEST)):
        written = json.loads(path.read_text())
        if isinstance(written.get("rows"), int) and "parts" in written:  # the export's own manifest is provenance
            found.append((str(path.parent), written["rows"], written["parts"], written["content_hash"]))
    width = max((len(name) for name, *_ in found), default=0)
    return "\n".join(
        f"  {name:<{width}}  {rows:>12,} rows  {parts:>4} part(s)  {digest}" for name, rows, parts, digest in found
    )
