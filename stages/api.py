"""The Python API, for a notebook or a script that does not want DVC: the stages `dvc repro` runs, the same entry
points with the same params, run in order in a project folder of their own, and the result handed back.

    import datasets, pairforge

    pairs = datasets.load_dataset("sentence-transformers/natural-questions", split="train[:1000]")
    triplets = pairforge.mine_hard_negatives(pairs, "query", "answer", num_negatives=3)

The stages resolve their paths against the working directory, so a run changes into the project folder and back:
one run at a time per process.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from pairforge.cli import STAGES
from pairforge.pipeline import artifacts


@contextlib.contextmanager
def working_directory(folder: Path) -> Iterator[None]:
    """`folder` as the working directory for the block (contextlib.chdir, which Python 3.10 lacks)."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def build(params: dict, project: str | Path) -> Path:
    """Run every stage in `project` (made if missing) with `params` (params.yaml's sections; what they leave out
    takes its default) and return the export folder. A stage's error is raised as one line (`RuntimeError`), as the
    stage prints it; the previous artifacts stay, and a second call reuses every cache, as `dvc repro` would."""
    project = Path(project).resolve()
    project.mkdir(parents=True, exist_ok=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with working_directory(project):
        for name in STAGES:
            try:
                importlib.import_module(f"pairforge.{name}").main()
            except SystemExit as failed:  # the stage's one line, and exit status 1
                raise RuntimeError(str(failed.code)) from None
    return project / "data" / "export"


def mine_hard_negatives(
    dataset,
    anchor_column_name: str = "anchor",
    positive_column_name: str = "positive",
    corpus: list[str] | None = None,
    num_negatives: int = 3,
    range_min: int = 0,
    range_max: int = 100,
    output_format: str = "triplet",
    project: str | Path | None = None,
    params: dict | None = None,
):
    """sentence-transformers' `mine_hard_negatives`, the pairforge way: the pairs of a `datasets.Dataset` mined
    for hard negatives in `corpus` (more documents; the positives are always in it), false negatives filtered out,
    and exported in `output_format` (see the README's output formats), returned as a `datasets.Dataset`.

    `params` sets anything else, by params.yaml section (e.g. `{"filter": {"duplicate_cosine": 0.7}}`); no
    counterfactual edits are made unless it asks for them (`generate`). `project` keeps the run's artifacts,
    caches and dataset card (a temporary folder by default, removed afterwards).
    """
    import datasets

    with contextlib.ExitStack() as cleanup:
        if project is None:
            project = cleanup.enter_context(tempfile.TemporaryDirectory(prefix="pairforge-"))
        project = Path(project).resolve()
        dataset.save_to_disk(str(project / "source"))
        ingest = {"source": "source", "format": "pairs", "anchor_column": anchor_column_name,
                  "positive_column": positive_column_name}  # fmt: skip
        if corpus is not None:
            datasets.Dataset.from_dict({"text": list(corpus)}).to_parquet(str(project / "corpus.parquet"))
            ingest["corpus"] = "corpus.parquet"
        sections = {
            "ingest": ingest,
            "mine": {"num_negatives": num_negatives, "range_min": range_min, "range_max": range_max},
            "generate": {"rules": [], "llm_backend": "none"},
            "export": {"formats": [output_format], "dev_fraction": 0.0},
        }
        for section, values in (params or {}).items():
            sections[section] = {**sections.get(section, {}), **values}
        exported = build(sections, project)
        # In memory, not in `datasets`' cache: the project folder may be a temporary one.
        return datasets.Dataset(artifacts.read(exported / output_format))
