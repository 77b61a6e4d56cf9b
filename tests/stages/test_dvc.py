"""DVC: real `dvc repro` in a temporary git repo re-runs exactly the stages whose deps or params changed."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import yaml

from pairforge.pipeline import artifacts
from pairforge.pipeline.models.hardware import resolve_precision
from tests.conftest import REPO, STAGES, dvc, ran


@pytest.mark.slow
def test_repro_reruns_only_what_changed(small_repro, tmp_path):
    first_repo, first = small_repro
    repo = tmp_path / "repo"
    shutil.copytree(first_repo, repo, symlinks=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert ran(first) == set(STAGES)
    chosen = resolve_precision("auto", "torch", "cpu")  # the default, `auto`, as it ran on this machine
    assert artifacts.manifest(repo / "data/embeddings/corpus")["precision"] == chosen
    assert f"(torch, {chosen}, max length" in (repo / "data/export/README.md").read_text()
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
    from pairforge.cli import STAGES as COMMANDS

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == list(COMMANDS) == list(STAGES)
    for name, stage in stages.items():
        assert stage["cmd"] == f"python -m pairforge.{name}"


def git(repo, *args) -> None:
    identity = ["-c", "user.name=pairforge-test", "-c", "user.email=test@pairforge.invalid"]
    subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)


def files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_pushed_version_comes_back_byte_for_byte_in_a_fresh_clone(small_repro, tmp_path):
    first_repo, _ = small_repro
    repo = tmp_path / "repo"
    shutil.copytree(first_repo, repo, symlinks=True)
    (repo / ".gitignore").write_text("/cache/\n")  # the caches stay local; DVC ignores data/ outputs itself
    dvc(repo, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dataset v1")
    git(repo, "tag", "v1")
    assert "pushed" in dvc(repo, "push")
    exported = files(repo / "data/export")
    version = json.loads((repo / "data/export/_manifest.json").read_text())["version"]
    for path in ("metrics/headline.json", "metrics/export.json"):  # `dvc metrics show` lists the first
        printed = dvc(repo, "metrics", "show", "--json", *([path] if "export" in path else []))  # then DVC's log
        shown = json.loads(printed[printed.index("{") : printed.rindex("}") + 1])
        metrics = next(iter(shown.values()))["data"][path]["data"]
        assert metrics["version"] == version
    assert metrics["scores"]["positive"]["count"] > 0
    dvc(repo, "plots", "show", "-o", str(tmp_path / "plots"))
    page = (tmp_path / "plots/index.html").read_text()
    assert "score distributions" in page and "rejections by reason" in page

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    assert not (clone / "data/export").exists()
    dvc(clone, "pull")
    assert files(clone / "data/export") == exported, "the same bytes, every part, card and manifest"
    dvc(tmp_path, "get", str(repo), "data/export", "--rev", "v1", "-o", str(tmp_path / "got"))
    assert json.loads((tmp_path / "got/_manifest.json").read_text())["version"] == version
    assert files(tmp_path / "got") == exported
    assert ran(dvc(clone, "repro")) == set(), "the clone's outputs match its dvc.lock: nothing to rebuild"


@pytest.mark.slow
def test_two_experiments_show_their_headline_metrics_side_by_side(small_repro, tmp_path):
    """`dvc exp run` records the headline metrics (in git, not DVC's cache) with each experiment, so `dvc exp show`
    and `dvc metrics diff` compare them; the full figures stay out of that table."""
    first_repo, _ = small_repro
    repo = tmp_path / "repo"
    shutil.copytree(first_repo, repo, symlinks=True)
    shutil.copy(REPO / ".gitignore", repo / ".gitignore")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "baseline")
    for name, share in (("dev-30", 0.3), ("dev-0", 0.0)):
        assert ran(dvc(repo, "exp", "run", "-n", name, "-S", f"export.dev_fraction={share}")) == {"export"}
    printed = dvc(repo, "exp", "show", "--json")
    shown = json.loads(printed[printed.index("[") : printed.rindex("]") + 1])
    groups = [group for exp in shown for group in exp.get("experiments") or []]
    runs = {rev["name"]: rev["data"] for group in groups for rev in group["revs"]}
    headline = {name: data["metrics"]["metrics/headline.json"]["data"] for name, data in runs.items()}
    assert set(headline) == {"dev-30", "dev-0"}
    assert headline["dev-0"]["rows"]["dev"] == 0 < headline["dev-30"]["rows"]["dev"]
    total = {name: sum(found["rows"].values()) for name, found in headline.items()}
    assert total["dev-0"] == total["dev-30"], "the same rows, split otherwise"
    assert headline["dev-0"]["score_p50"] == headline["dev-30"]["score_p50"]
    assert all("metrics/export.json" not in data["metrics"] for data in runs.values()), "the detail is not a column"
    diff = dvc(repo, "metrics", "diff", "dev-30", "dev-0")
    assert "rows.dev" in diff and "rows.train" in diff
