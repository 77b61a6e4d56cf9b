"""DVC: real `dvc repro` in a temporary git repo re-runs exactly the stages whose deps or params changed."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import REPO, STAGES, dvc, ran


@pytest.mark.slow
def test_repro_reruns_only_what_changed(small_repro, tmp_path):
    first_repo, first = small_repro
    repo = tmp_path / "repo"
    shutil.copytree(first_repo, repo, symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
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
