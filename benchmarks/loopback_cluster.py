"""A real multi-node Ray cluster on this machine (`ray start --head` plus worker nodes on loopback), for the
cluster test and the scaling benchmarks.

    with LoopbackCluster(nodes=2, cpus_per_node=1) as address:
        ...  # RAY_ADDRESS=address (and RAY_AUTH_MODE=disabled) joins it
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
# Ray 2.5x turns on token auth for `ray start`; a throwaway loopback cluster does without it. Clients joining it
# need the same setting in their environment.
ENV = {"RAY_AUTH_MODE": "disabled"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackCluster:
    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_mb: int = 400):
        self.nodes, self.port = nodes, _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.node_args = [
            "--num-cpus", str(cpus_per_node),
            "--object-store-memory", str(object_store_mb * 2**20),
            "--disable-usage-stats",
            "--node-ip-address", "127.0.0.1",
        ]  # fmt: skip

    def __enter__(self) -> str:
        env = {**os.environ, **ENV}
        head = ["start", "--head", "--port", str(self.port), "--include-dashboard", "false"]
        try:
            subprocess.run([RAY, *head, *self.node_args], env=env, check=True, capture_output=True, timeout=120)
            for _ in range(self.nodes - 1):
                worker = ["start", "--address", self.address]
                subprocess.run([RAY, *worker, *self.node_args], env=env, check=True, capture_output=True, timeout=120)
        except BaseException:
            self.stop()
            raise
        return self.address

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop this cluster's processes only (`ray stop` would also stop any other local Ray, e.g. a test's)."""
        marks = (f":{self.port}", f"={self.port}")
        mine = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(mark in arg for arg in p.info["cmdline"] or [] for mark in marks)
        ]
        for process in mine:
            process.kill()
        psutil.wait_procs(mine, timeout=30)
        # `ray start` recorded this cluster as the machine's current one; `ray stop` would forget it, and so must we,
        # or a later address-less ray.init() elsewhere would try to join the dead cluster.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if current.exists() and current.read_text().strip().endswith(f":{self.port}"):
            current.unlink()
