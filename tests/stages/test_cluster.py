"""A real two-node Ray cluster on this machine: `dvc repro` runs against it, work lands on both nodes, and every
artifact has the same content hash as the local run of the same params, whose small work ran in each stage's own
process (see runtime.map_batches): the bytes depend neither on the number of actors nor on where they run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import loopback_cluster
from benchmarks.loopback_cluster import LoopbackCluster
from tests.conftest import dvc, dvc_project


@pytest.fixture
def cluster():
    with LoopbackCluster(nodes=2, cpus_per_node=1) as address:
        yield address


def worker_nodes(address: str) -> dict[str, set[str]]:
    """Node ids that ran each kind of pipeline actor, from the cluster's own actor table."""
    script = (
        "import json, ray\n"
        "import ray._private.state as state\n"  # the public state API needs the dashboard, which is off here
        "ray.init(log_to_driver=False)\n"
        "print(json.dumps([[a['ActorClassName'], a['Address']['NodeID']] for a in state.actors().values()]))\n"
    )
    env = {**os.environ, **loopback_cluster.ENV, "RAY_ADDRESS": address}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    nodes: dict[str, set[str]] = {}
    for name, node in json.loads(out.stdout.strip().splitlines()[-1]):  # pools name their actors after the worker
        nodes.setdefault(name, set()).add(node)
    return nodes


def content_hashes(workdir: Path) -> dict[str, str]:
    """Every artifact's content hash (the export's: its version, the hash of its formats' content hashes), and
    the FAISS index's bytes. Manifests also record the params, actor counts included: not compared."""
    data = workdir / "data"
    hashes = {}
    for manifest in data.rglob("_manifest.json"):
        found = json.loads(manifest.read_text())
        hashes[str(manifest.parent.relative_to(data))] = found.get("content_hash") or found["version"]
    hashes["index/index.faiss"] = (data / "index/index.faiss").read_bytes().hex()
    return hashes


@pytest.mark.slow
def test_dvc_repro_on_a_two_node_cluster_spreads_work_and_writes_the_local_bytes(cluster, small_repro, tmp_path):
    local, _ = small_repro
    repo = dvc_project(tmp_path / "repo", yaml.safe_load((local / "params.yaml").read_text()))
    printed = dvc(repo, "repro", env={**loopback_cluster.ENV, "RAY_ADDRESS": cluster})
    for noise in ("RayDeprecationWarning", "core_worker.cc", "Progress bars disabled", "Token authentication"):
        assert noise not in printed, f"Ray's {noise!r} is back in the stages' output"
    nodes = worker_nodes(cluster)
    assert len(set().union(*nodes.values())) == 2, nodes
    assert len(nodes["EmbedBatch"]) == 2, "one encoder actor per node"
    assert content_hashes(repo) == content_hashes(local)
