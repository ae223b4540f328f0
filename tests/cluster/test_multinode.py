"""A real multi-node Ray cluster on this machine: `ray start --head` and worker nodes
with `ray start --address`, tunefleet joined to it with RAY_ADDRESS, jobs over HTTP."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from shared.data import PARQUET_ROW_GROUP_ROWS
from tests.helpers.ray_nodes import RayCluster
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

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

ONE_TRIAL = {"dataset": {"builtin": "digits"}, "search_space": {"hidden_units": 16, "epochs": 1}}


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
    stack.env.update(
        RAY_ADDRESS=ray_cluster.address,
        RAY_AUTH_TOKEN=ray_cluster.token,
        TUNEFLEET_LEASE_S="10",
        # As a deployed driver does: live once its warm-up tasks (one per CPU, on every
        # node) are done. Taking the first job at once, its first epochs met worker CPUs
        # still held by the warm-up and ran on one node (seen in the suite).
        TUNEFLEET_DRIVER_WARM_WAIT_S="60",
    )
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


def test_a_batch_job_is_scored_on_every_node_that_has_cpus(
    ray_cluster: RayCluster, cluster_stack: Stack
) -> None:
    workers = {n["id"] for n in ray_cluster.nodes() if n["resources"].get("CPU", 0) >= 1}
    job = cluster_stack.wait_for(cluster_stack.http.post("/jobs", json=ONE_TRIAL).json()["id"])
    assert job["state"] == "succeeded", job.get("error")
    model = job["id"]
    # Three row groups of the upload's Parquet copy: three pieces for two nodes.
    rows = 3 * PARQUET_ROW_GROUP_ROWS
    table = pd.DataFrame(np.random.default_rng(0).integers(0, 17, size=(rows, 64)))
    table.columns = [f"pixel_{i // 8}_{i % 8}" for i in range(64)]
    upload = cluster_stack.http.post(
        "/datasets",
        params={"purpose": "scoring"},
        files={"file": ("rows.csv", table.to_csv(index=False).encode(), "text/csv")},
    )
    assert upload.status_code == 201, upload.text
    answer = cluster_stack.http.post(
        f"/models/{model}/batch", json={"dataset": upload.json()["id"]}
    )
    assert answer.status_code == 202, answer.text
    done = cluster_stack.wait_for(answer.json()["id"])
    assert done["state"] == "succeeded", done.get("error")
    assert done["rows_done"] == rows
    assert set(done["scored_on"]) == workers


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


# Another Ray job that holds one node's CPU until its stdin closes.
HOLDER = """
import sys, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init(address=sys.argv[1], logging_level="ERROR")

@ray.remote(num_cpus=1)
class Holder:
    def ready(self):
        return True

on_node = NodeAffinitySchedulingStrategy(sys.argv[2], soft=False)
holder = Holder.options(scheduling_strategy=on_node).remote()
ray.get(holder.ready.remote())
print("held", flush=True)
sys.stdin.read()
"""


def test_packs_run_on_the_node_with_room_when_another_job_holds_one(
    ray_cluster: RayCluster, cluster_stack: Stack
) -> None:
    held, free = sorted(n["id"] for n in ray_cluster.nodes() if n["resources"].get("CPU", 0) >= 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ray_cluster.address, held],
        env=ray_cluster.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # Two packs: before, one was asked for the held node and waited there for good.
        rows = trials_of(cluster_stack, JOB)
        assert {row["node_id"] for row in rows} == {free}
    finally:
        holder.communicate(timeout=60)


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
