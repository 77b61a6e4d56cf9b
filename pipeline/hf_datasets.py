"""Hugging Face datasets as ingest sources: a hub id (`hf:<id>`), a folder written by `save_to_disk`, or a folder
of data files that `datasets.load_dataset` reads. Rows come out as the file readers' do: (1-based row, record)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pairforge.pipeline.schema import InputError

HUB = "hf:"
# What `save_to_disk` leaves in a dataset's folder (a DatasetDict's, a Dataset's).
SAVED = ("dataset_dict.json", "state.json")


def is_dataset(source: str) -> bool:
    """A hub id, or a folder (a pair file is a file: a folder of pairs is a dataset)."""
    return str(source).startswith(HUB) or Path(source).is_dir()


def _load(source: str, split: str, subset: str | None):
    import datasets

    try:
        if str(source).startswith(HUB):
            loaded = datasets.load_dataset(str(source)[len(HUB) :], subset, split=split)
        elif any((Path(source) / name).exists() for name in SAVED):
            loaded = datasets.load_from_disk(str(source))
        else:
            loaded = datasets.load_dataset(str(source), subset, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        problem = f"not a dataset `datasets` can load ({type(err).__name__}: {err})"
        raise InputError(source, None, None, problem) from err
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise InputError(source, None, None, f"no split {split!r} (it has {sorted(loaded)}): set ingest.split")
        loaded = loaded[split]
    return loaded


def records(source: str, split: str, subset: str | None) -> Iterator[tuple[int, dict]]:
    loaded = _load(source, split, subset)
    if loaded.num_rows == 0:
        raise InputError(source, None, None, f"split {split!r} holds no records")
    yield from enumerate(loaded, start=1)


def fingerprint(source: str, split: str, subset: str | None) -> str:
    """`datasets`' own fingerprint of the split read: what changes when its data does."""
    return _load(source, split, subset)._fingerprint
