"""The autoscaler for real: a Ray head started with a cluster-launcher config (Ray's fake
multi-node provider, which starts and removes worker nodes as local raylets), tunefleet
joined to it as on a cluster's head, and a job whose trials need CPUs the head does not
have. Workers come for the trials, the trials run there, idle workers go away, and
stopping the head leaves no process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.ray_nodes import COMMAND_LISTS, RayCluster
from tests.helpers.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKER_CPUS = 2
MAX_WORKERS = 2
# Four one-CPU trials on a head with none: the autoscaler must start workers for them.
# Batch size 4 on digits keeps each trial training long enough to see the workers.
JOB = {
    "dataset": {"builtin": "digits"},
    "search_space": {
        "lr": {"grid": [0.005, 0.01, 0.02, 0.04]},
        "hidden_units": 16,
        "batch_size": 4,
        "epochs": 4,
    },
    "resources": {"cpu": 1},
}


def launcher_config(gcs_address: str) -> dict[str, Any]:
    """A cluster-launcher config for Ray's fake multi-node provider, every default spelled
    out (the wheel lacks the provider's defaults file): a head with no CPUs and one worker
    type the autoscaler may start twice, idle workers removed after 6 s."""
    return {
        "cluster_name": "tunefleet-autoscaling-test",
        "max_workers": MAX_WORKERS,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "cpu_worker": {
                "resources": {"CPU": WORKER_CPUS},
                "node_config": {},
                "min_workers": 0,
                "max_workers": MAX_WORKERS,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        **{key: [] for key in COMMAND_LISTS},
    }


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("launcher") / "cluster.yaml"


@pytest.fixture(scope="module")
def autoscaling_cluster(config_path: Path) -> Iterator[RayCluster]:
    """The head, with the launcher's config; stopping it (what `ray down` does here, by
    process id) must leave no process of the cluster, workers included."""
    cluster = RayCluster()
    config_path.write_text(yaml.safe_dump(launcher_config(cluster.address)))
    cluster.env["RAY_FAKE_CLUSTER"] = "1"
    try:
        cluster.start_head(f"--autoscaling-config={config_path}")
        yield cluster
    finally:
        left = cluster.stop()
    assert not left, f"processes left after stopping the head: {left}"


@pytest.fixture(scope="module")
def head_stack(
    autoscaling_cluster: RayCluster, config_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """`tunefleet up` on the head, reading the launcher's config for the node types."""
    stack = Stack(tmp_path_factory.mktemp("head-stack"))
    stack.env.update(
        RAY_ADDRESS=autoscaling_cluster.address,
        RAY_AUTH_TOKEN=autoscaling_cluster.token,
        TUNEFLEET_AUTOSCALER_CONFIG=str(config_path),
    )
    stack.start()
    yield stack
    left = stack.stop()
    assert not left, f"processes left after Ctrl-C: {left}\n{stack.log_tail()}"


def cpu_workers(cluster: RayCluster) -> set[str]:
    return {n["id"] for n in cluster.nodes() if n["resources"].get("CPU", 0) > 0}


def wait_until(check: Any, timeout_s: float, what: str, cluster: RayCluster, stack: Stack) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(2)
    raise AssertionError(
        f"not within {timeout_s} s: {what}\nautoscaler: {cluster.log_tail()}\n"
        f"stack: {stack.log_tail()}"
    )


@pytest.mark.parametrize("packing", [False, True], ids=["unpacked", "packed"])
def test_trials_bring_workers_that_go_away_when_idle(
    autoscaling_cluster: RayCluster, head_stack: Stack, packing: bool
) -> None:
    (head,) = autoscaling_cluster.nodes()
    assert head["resources"].get("CPU", 0) == 0, "the head has no CPUs for trials"
    # A trial asks for more than the head has, but a node type can give it: accepted.
    answer = head_stack.http.post("/jobs", json={**JOB, "packing": packing})
    assert answer.status_code == 202, answer.text
    job = head_stack.wait_for(answer.json()["id"], timeout_s=300)
    assert job["state"] == "succeeded", job.get("error")
    if packing:
        # One pack per trial: as many as the worker type holds at its maximum (4 slots),
        # all asked of Ray at once, rather than one pack of 4 for the head's no slots.
        assert job["engine"] == "packed: 4 packs of up to 1 configurations"

    rows = head_stack.http.get(f"/jobs/{job['id']}/trials").json()
    assert len(rows) == 4
    # Every trial ran on a node that was not there when the job came: one the autoscaler
    # started (how they spread over the workers depends on which came up first).
    assert {row["node_id"] for row in rows}.isdisjoint({head["id"], None}), rows

    wait_until(
        lambda: not cpu_workers(autoscaling_cluster),
        120,
        "idle workers go away",
        autoscaling_cluster,
        head_stack,
    )
