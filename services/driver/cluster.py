"""What the driver checks about the Ray cluster: the node shapes it can offer a trial
(published for the gateway), and that the storage root is shared by every node."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from shared.capacity import Capacity, NodeShape
from shared.errors import TunefleetError

log = logging.getLogger(__name__)
CHECK_FOLDER = ".tunefleet-storage-check"
NODE_CHECK_TIMEOUT_S = 60.0


class StorageNotSharedError(TunefleetError):
    """Raised when some node of the cluster cannot see the storage root."""


def capacity(autoscaler_config: Path | None) -> Capacity:
    """The alive nodes' resources, and the node types in the autoscaler's config."""
    shapes = [
        NodeShape(
            name=node["NodeID"],
            cpu=float(node["Resources"].get("CPU", 0)),
            gpu=float(node["Resources"].get("GPU", 0)),
        )
        for node in ray.nodes()
        if node.get("Alive")
    ]
    if autoscaler_config is not None and autoscaler_config.exists():
        config = yaml.safe_load(autoscaler_config.read_text()) or {}
        for name, node_type in (config.get("available_node_types") or {}).items():
            if int(node_type.get("max_workers", 0)) > 0 or name == config.get("head_node_type"):
                resources = node_type.get("resources") or {}
                shapes.append(
                    NodeShape(
                        name=f"type:{name}",
                        cpu=float(resources.get("CPU", 0)),
                        gpu=float(resources.get("GPU", 0)),
                    )
                )
    return Capacity(nodes=shapes)


def check_shared_storage(storage_root: Path) -> None:
    """On a cluster of several nodes, make sure each alive node sees files written
    here under ``storage_root``, and that files it writes are seen here. Tune's trials
    write checkpoints straight to storage from their node, so a folder local to each
    node loses them. StorageNotSharedError names the nodes that cannot."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) < 2:
        return
    folder = storage_root / CHECK_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    marker = folder / token
    marker.write_text(token)
    try:
        probes = {
            node["NodeID"]: _probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(marker), token)
            for node in nodes
        }
        blind = []
        for node_id, probe in probes.items():
            try:
                seen, written = ray.get(probe, timeout=NODE_CHECK_TIMEOUT_S)
            except Exception:  # a node that cannot run the probe in time: not confirmed
                log.warning("storage check: node %s did not answer", node_id, exc_info=True)
                blind.append(node_id)
                continue
            reply = Path(written) if written else None
            if not seen or reply is None or not reply.exists():
                blind.append(node_id)
            if reply is not None:
                reply.unlink(missing_ok=True)
    finally:
        marker.unlink(missing_ok=True)
    if blind:
        raise StorageNotSharedError(
            f"TUNEFLEET_STORAGE ({storage_root}) is not shared: {len(blind)} of "
            f"{len(nodes)} nodes cannot see files written there by the driver "
            f"(node ids {', '.join(n[:12] for n in blind)}). Trials write checkpoints from "
            "their own node, so set TUNEFLEET_STORAGE to a folder mounted at the same path "
            "on every node (NFS, EFS) and restart tunefleet"
        )
    log.info("storage %s is shared by all %d nodes", storage_root, len(nodes))


@ray.remote(num_cpus=0)
def _probe(marker: str, token: str) -> tuple[bool, str | None]:
    """On one node: whether the driver's marker is visible, and a reply file written."""
    path = Path(marker)
    seen = path.exists() and path.read_text() == token
    reply: Any = path.with_name(f"{token}-{ray.get_runtime_context().get_node_id()}")
    try:
        reply.write_text(token)
    except OSError:
        return seen, None
    return seen, str(reply)
