"""A real multi-node Ray cluster on this machine: `ray start --head` and worker nodes
with `ray start --address`, tunefleet joined to it with RAY_ADDRESS, jobs over HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster.redis_server import free_port
from tests.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RAY = Path(sys.executable).parent / "ray"
# Two packs of two on this 2-CPU cluster. Epochs long enough (digits, batch size 4) that
# both packs' epochs run at once, so each needs a node of its own.
JOB = {
    "dataset": {"builtin": "digits"},
    "search_space": {
        "lr": {"grid": [0.005, 0.01, 0.02, 0.04]},
        "hidden_units": 16,
        "batch_size": 4,
        "epochs": 3,
    },
}


class RayCluster:
    """Ray nodes started the way an operator starts them, stopped by their process ids
    (never `ray stop`, which would stop every Ray on the machine)."""

    def __init__(self) -> None:
        # Short: Ray puts Unix sockets below it, and their paths have a length limit.
        self.temp_dir = tempfile.mkdtemp(prefix="tfr", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token"}
        self.env.pop("RAY_ADDRESS", None)

    def start_head(self) -> None:
        self._ray_start(
            "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
            f"--ray-client-server-port={free_port()}", "--num-cpus=0",
            "--include-dashboard=false",
        )  # fmt: skip

    def add_worker(self, *resources: str, prefix: tuple[str, ...] = ()) -> None:
        """A worker node; ``prefix`` runs `ray start` under another command."""
        self._ray_start(f"--address={self.address}", *resources, prefix=prefix)

    def nodes(self) -> list[dict[str, Any]]:
        """The alive nodes: id and resources, read by a short-lived Ray client."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR');"
            "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']}"
            " for n in ray.nodes() if n['Alive']]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        nodes: list[dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
        return nodes

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.nodes()
            if len(nodes) >= count or time.monotonic() > deadline:
                return nodes
            time.sleep(2)

    def stop(self) -> None:
        ours = _processes_of(self.temp_dir, f":{self.port}")
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _ray_start(self, *args: str, prefix: tuple[str, ...] = ()) -> None:
        done = subprocess.run(
            [*prefix, str(RAY), "start", *args, "--disable-usage-stats"],
            env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _processes_of(*marks: str) -> set[int]:
    """Processes whose command line carries one of ``marks``, and all below them."""

    def command(pid: str) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return ""

    found = {
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and any(mark in command(pid) for mark in marks)
    }
    frontier = list(found)
    while frontier:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(frontier.pop())], capture_output=True, text=True
        ).stdout
        children = {int(p) for p in out.split()} - found
        found |= children
        frontier.extend(children)
    found.discard(os.getpid())
    return found


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    cluster = RayCluster()
    try:
        cluster.start_head()
        cluster.add_worker("--num-cpus=1")
        cluster.add_worker("--num-cpus=1", "--num-gpus=1")
        assert len(cluster.wait_for_nodes(3)) == 3
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def cluster_stack(
    ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """`tunefleet up` joined to the cluster (no second Ray), as on a cluster's head."""
    stack = Stack(tmp_path_factory.mktemp("cluster-stack"))
    stack.env.update(RAY_ADDRESS=ray_cluster.address, TUNEFLEET_LEASE_S="10")
    stack.start()
    yield stack
    left = stack.stop()
    assert not left, f"processes left after Ctrl-C: {left}\n{stack.log_tail()}"


def trials_of(stack: Stack, spec: dict[str, Any]) -> list[dict[str, Any]]:
    answer = stack.http.post("/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    job = stack.wait_for(answer.json()["id"])
    assert job["state"] == "succeeded", job.get("error")
    rows: list[dict[str, Any]] = stack.http.get(f"/jobs/{job['id']}/trials").json()
    return rows


def test_trials_spread_over_every_node_that_has_cpus(
    ray_cluster: RayCluster, cluster_stack: Stack
) -> None:
    workers = {n["id"] for n in ray_cluster.nodes() if n["resources"].get("CPU", 0) >= 1}
    assert len(workers) == 2
    rows = trials_of(cluster_stack, JOB)
    assert len(rows) == 4
    assert {row["node_id"] for row in rows} == workers, [
        (r["trial_id"], r["node_id"]) for r in rows
    ]


def test_gpu_trials_land_only_on_the_gpu_node(
    ray_cluster: RayCluster, cluster_stack: Stack
) -> None:
    (gpu_node,) = [n["id"] for n in ray_cluster.nodes() if n["resources"].get("GPU", 0) >= 1]
    rows = trials_of(cluster_stack, {**JOB, "resources": {"cpu": 1, "gpu": 0.5}})
    assert {row["node_id"] for row in rows} == {gpu_node}
    # The node declares a logical GPU; with no CUDA here, trials fall back to the CPU.
    assert {row["device"] for row in rows} == {"cpu"}


def test_more_than_any_node_has_is_refused_at_submit(cluster_stack: Stack) -> None:
    for resources, named in (({"cpu": 1, "gpu": 2}, "2 GPU"), ({"cpu": 4}, "4 CPU")):
        answer = cluster_stack.http.post("/jobs", json={**JOB, "resources": resources})
        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert named in detail and "most on one node: 1 CPU, 1 GPU" in detail


def test_a_node_that_cannot_see_the_storage_fails_the_job_with_what_to_set(
    ray_cluster: RayCluster, cluster_stack: Stack
) -> None:
    storage = cluster_stack.home / "storage"
    # A node whose storage folder is its own (an empty tmpfs in its own mount namespace),
    # as a node-local TUNEFLEET_STORAGE is on a real cluster.
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a mount namespace here (unshare -m)")
    mount = f'mount -t tmpfs none {storage} && exec "$@"'
    ray_cluster.add_worker(
        "--num-cpus=1",
        prefix=["unshare", "-m", "--propagation", "private", "sh", "-c", mount, "sh"],
    )
    assert len(ray_cluster.wait_for_nodes(4)) == 4
    answer = cluster_stack.http.post("/jobs", json=JOB)
    job = cluster_stack.wait_for(answer.json()["id"])
    assert job["state"] == "failed"
    assert "TUNEFLEET_STORAGE" in job["error"] and "not shared" in job["error"]
    assert "1 of 4 nodes" in job["error"]
