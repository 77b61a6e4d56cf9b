"""Entry points a new user meets first: `--help` on every stage says what it does and runs nothing, and
`pairforge init` writes the ingest params for their own data."""

from __future__ import annotations

import subprocess
import sys

import datasets
import pyarrow.parquet as pq
import yaml

from pairforge.pipeline.ingest import ingest
from pairforge.pipeline.params import load
from tests.conftest import REPO, STAGES
from tests.test_ingest import make_beir, write_jsonl


def test_help_on_every_stage_describes_it_and_runs_nothing(tmp_path):
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    running = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"pairforge.{name}", "--help"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for name in STAGES
    }
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.startswith(f"usage: python -m pairforge.{name}") and f"DVC stage `{name}`" in out
        assert f"Reads the `{name}` section of ./params.yaml" in out
    assert list(tmp_path.iterdir()) == [], "no params read, no data/ or cache/ written"
    wrong = subprocess.run([sys.executable, "-m", "pairforge.mine", "--force"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert wrong.returncode == 2 and "unrecognized arguments: --force" in wrong.stderr


def pairforge(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pairforge.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})  # fmt: skip


def test_init_writes_the_ingest_params_for_a_pair_file_a_beir_folder_and_a_dataset(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "params.yaml").write_text((REPO / "params.yaml").read_text())
    rows = [{"id": "1", "question": "what is alpha?", "context": "Alpha is first.", "hard_negative": "Beta."}]
    write_jsonl(tmp_path / "mine.jsonl", rows)
    done = pairforge("init", "../mine.jsonl", cwd=project)
    assert done.returncode == 0, done.stderr
    assert "anchor_column question, positive_column context" in done.stdout
    written = yaml.safe_load((project / "params.yaml").read_text())
    assert written["ingest"] == {"source": "../mine.jsonl", "format": "pairs", "anchor_column": "question",
                                 "positive_column": "context", "negative_column": "hard_negative"}  # fmt: skip
    default = yaml.safe_load((REPO / "params.yaml").read_text())
    assert {k: v for k, v in written.items() if k != "ingest"} == {k: v for k, v in default.items() if k != "ingest"}
    assert (project / "params.yaml").read_text().startswith("# pairforge parameters")
    config = load("ingest", project / "params.yaml")
    tables = ingest(config.__class__(**{**config.__dict__, "source": str(tmp_path / "mine.jsonl")}))
    assert tables["corpus"]["text"].to_pylist() == ["Alpha is first.", "Beta."]

    make_beir(tmp_path / "beir")
    assert pairforge("init", str(tmp_path / "beir"), "--split", "train", cwd=project).returncode == 0
    assert load("ingest", project / "params.yaml").format == "beir"

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"sentence1": ["a b"], "sentence2": ["c d"], "score": [0.5]}).save_to_disk(str(saved))
    assert pairforge("init", str(saved), cwd=project).returncode == 0
    config = load("ingest", project / "params.yaml")
    assert (config.source, config.anchor_column, config.positive_column) == ("../saved", "sentence1", "sentence2")

    pq.write_table(datasets.Dataset.from_dict({"n": [1]}).data.table, tmp_path / "numbers.parquet")
    refused = pairforge("init", str(tmp_path / "numbers.parquet"), cwd=project)
    assert refused.returncode == 1 and "found text columns []; a pair needs two" in refused.stderr
    assert load("ingest", project / "params.yaml").source == "../saved", "a refused init leaves params.yaml as it was"


def test_the_installed_names_leave_a_users_pipeline_and_stages_modules_alone(tmp_path):
    """Installed as `pairforge` and `pairforge.pipeline`: outside the repository, `pipeline` and `stages` are the
    user's own names."""
    (tmp_path / "pipeline.py").write_text("MINE = True\n")
    script = "import pairforge.pipeline.embed, pairforge.mine, pipeline\nprint(pipeline.MINE, pairforge.build)"
    shown = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("True <function build")
