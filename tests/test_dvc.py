"""DVC: real `dvc repro` in a temporary git repo re-runs exactly the stages whose deps or params changed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, STAGES, project_params, write_beir_sample


def dvc(repo, *args, env: dict | None = None) -> str:
    env = {**os.environ, **(env or {}), "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def dvc_project(repo: Path, params: dict) -> Path:
    """A git + DVC repo holding this project's code, dvc.yaml and the given params."""
    repo.mkdir()
    for part in ("pipeline", "stages", "dvc.yaml"):
        (shutil.copytree if (REPO / part).is_dir() else shutil.copy)(REPO / part, repo / part)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    dvc(repo, "config", "core.analytics", "false")
    return repo


@pytest.mark.slow
def test_repro_reruns_only_what_changed(scifact, tmp_path):
    source = write_beir_sample(scifact, tmp_path / "beir", queries=20, docs=120)
    params = project_params(source, index={"topics": 4}, mine={"range_max": 20}, generate={"llm_backend": "none"})
    repo = dvc_project(tmp_path / "repo", params)

    first = dvc(repo, "repro")
    assert ran(first) == set(STAGES)
    version = yaml.safe_load((repo / "metrics/export.json").read_text())["version"]

    params["mine"]["num_negatives"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    second = dvc(repo, "repro")
    assert ran(second) == {"mine", "filter", "export"}
    assert yaml.safe_load((repo / "metrics/export.json").read_text())["version"] != version

    params["filter"]["duplicate_cosine"] = 0.5  # retuning a judge does not re-embed or re-mine
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran(dvc(repo, "repro")) == {"filter", "export"}

    params["generate"]["rules"] = ["negation_insert"]  # new edits are validated and exported, nothing re-mined
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    assert ran(dvc(repo, "repro")) == {"generate", "filter", "export"}

    third = dvc(repo, "repro")
    assert ran(third) == set()
    assert "up to date" in third


def test_every_dvc_stage_is_a_pairforge_command_in_order():
    from stages.cli import STAGES as COMMANDS

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(COMMANDS) == list(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m stages.{name}"
