"""`pairforge init`: the ingest params for a user's own data, guessed from its layout and columns, written into
params.yaml so that `dvc repro` runs on it next."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import yaml

from pairforge.pipeline import artifacts, hf_datasets
from pairforge.pipeline.params import parse
from pairforge.pipeline.records import BadRows, is_beir_folder, rows

# Column names that usually hold each side of a pair, most specific first (sentence-transformers' datasets, QA
# and NLI files, BEIR-like exports).
ANCHORS = ("anchor", "query", "question", "sentence1", "text1", "premise", "prompt", "claim", "title")
POSITIVES = ("positive", "document", "passage", "context", "answer", "sentence2", "text2", "hypothesis", "response")
NEGATIVES = ("negative", "hard_negative", "negative_1")


def _pick(names: list[str], preferred: tuple[str, ...], taken: set[str]) -> str | None:
    lower = {name.lower(): name for name in names if name not in taken}
    return next((lower[name] for name in preferred if name in lower), None)


def guess_ingest(source: str, split: str = "train") -> dict:
    """The `ingest` section for `source`: BEIR for a folder with corpus, queries and qrels; otherwise a pair file or
    dataset, its anchor / positive (/ negative) columns picked by name, or else its first two text columns."""
    if is_beir_folder(source):
        return {"source": source, "format": "beir", "split": split}
    _, record = next(iter(rows(source, split, None, BadRows())))
    texts = [name for name, value in record.items() if isinstance(value, str)]
    anchor = _pick(texts, ANCHORS, set())
    positive = _pick(texts, POSITIVES, {anchor})
    rest = [name for name in texts if name not in {anchor, positive}]
    if anchor is None and rest:
        anchor = rest.pop(0)
    if positive is None and rest:
        positive = rest.pop(0)
    if anchor is None or positive is None:
        raise ValueError(f"{source}: found text columns {texts}; a pair needs two (set ingest.anchor_column and "
                         "ingest.positive_column by hand)")  # fmt: skip
    section = {"source": source, "format": "pairs", "anchor_column": anchor, "positive_column": positive}
    negative = _pick(texts, NEGATIVES, {anchor, positive})
    if negative:
        section["negative_column"] = negative
    if hf_datasets.is_dataset(source):
        section["split"] = split
    return section


def write_ingest(params_file: Path, section: dict) -> None:
    """Replace params.yaml's `ingest` section (the other sections, and the file's opening comment, stay)."""
    text = params_file.read_text() if params_file.exists() else ""
    lines = text.splitlines()
    opening = "".join(line + "\n" for line in itertools.takewhile(lambda line: line.startswith("#"), lines))
    loaded = yaml.safe_load(text) or {}
    section = dict(section)
    for key in ("source", "corpus"):  # paths as the stages, run beside params.yaml, will see them
        if section.get(key) and not str(section[key]).startswith(hf_datasets.HUB):
            section[key] = os.path.relpath(Path(section[key]).resolve(), params_file.resolve().parent)
    parse("ingest", section, str(params_file))  # what params.yaml would reject fails here, before the file changes
    loaded["ingest"] = section
    dumped = yaml.safe_dump(loaded, sort_keys=False, allow_unicode=True, width=120)
    artifacts.write_text_atomically(params_file, opening + dumped)
