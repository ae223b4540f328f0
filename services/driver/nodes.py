"""What the driver checks about the Ray cluster: the node shapes it can offer a trial
(published for the gateway), and that every node reaches the storage root: the same
shared folder, or a bucket."""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from shared.capacity import Capacity, NodeShape
from shared.errors import StorageUnavailableError, TunefleetError
from shared.spec import Resources
from shared.storage import STORAGE_SETTINGS_HINT, StoragePath

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


def autoscaler_slots(resources: Resources, autoscaler_config: Path | None) -> int:
    """How many trials of ``resources`` the worker node types in the autoscaler's config
    hold at their maximums: what the cluster can grow to, beyond the nodes alive now."""
    if autoscaler_config is None or not autoscaler_config.exists():
        return 0
    config = yaml.safe_load(autoscaler_config.read_text()) or {}
    slots = 0
    for name, node_type in (config.get("available_node_types") or {}).items():
        if name == config.get("head_node_type"):
            continue
        offered = node_type.get("resources") or {}
        if resources.gpu > 0:
            fits = int(float(offered.get("GPU", 0)) // resources.gpu)
        else:
            fits = int(float(offered.get("CPU", 0)) // resources.cpu)
        slots += fits * int(node_type.get("max_workers", 0))
    return slots


def check_shared_storage(storage_root: StoragePath) -> None:
    """Make sure that files written here under ``storage_root`` are seen on each alive
    node, and that files a node writes are seen here: Tune's trials write checkpoints
    straight to storage from their node, so a folder local to each node loses them.
    Object storage is checked from the driver even on one node, since a wrong endpoint,
    credentials or bucket fail everything a job writes. StorageUnavailableError names
    what to set; StorageNotSharedError the nodes that cannot see a shared folder."""
    nodes = [node for node in ray.nodes() if node.get("Alive")]
    if len(nodes) < 2 and storage_root.local is not None:
        return
    folder = storage_root / CHECK_FOLDER
    token = uuid.uuid4().hex
    marker = folder / token
    try:
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(token)
    except StorageUnavailableError as exc:
        raise StorageUnavailableError(
            f"the driver cannot write to TUNEFLEET_STORAGE ({storage_root}): {exc}, then "
            "restart tunefleet"
        ) from exc
    try:
        blind, errors = _probe_nodes(nodes, marker, token)
    finally:
        marker.unlink(missing_ok=True)
    if blind and storage_root.local is None:
        first = errors[0] if errors else "the driver's file was not seen"
        raise StorageUnavailableError(
            f"TUNEFLEET_STORAGE ({storage_root}) cannot be reached from {len(blind)} of "
            f"{len(nodes)} nodes (node ids {', '.join(n[:12] for n in blind)}): {first}. "
            f"On every node, {STORAGE_SETTINGS_HINT}"
        )
    if blind:
        raise StorageNotSharedError(
            f"TUNEFLEET_STORAGE ({storage_root}) is not shared: {len(blind)} of "
            f"{len(nodes)} nodes cannot see files written there by the driver "
            f"(node ids {', '.join(n[:12] for n in blind)}). Trials write checkpoints from "
            "their own node, so set TUNEFLEET_STORAGE to a folder mounted at the same path "
            "on every node (NFS, EFS) or to a bucket (s3://bucket/prefix) and restart "
            "tunefleet"
        )
    log.info("storage %s is reached by all %d nodes", storage_root, len(nodes))


def _probe_nodes(
    nodes: list[dict[str, Any]], marker: StoragePath, token: str
) -> tuple[list[str], list[str]]:
    """The ids of the nodes that cannot see ``marker`` or write beside it (none on a
    single node: the driver's own write was the check), and their errors."""
    if len(nodes) < 2:
        return [], []
    probes = {
        node["NodeID"]: _probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        ).remote(marker, token)
        for node in nodes
    }
    blind, errors = [], []
    for node_id, probe in probes.items():
        try:
            seen, reply, error = ray.get(probe, timeout=NODE_CHECK_TIMEOUT_S)
        except Exception:  # a node that cannot run the probe in time: not confirmed
            log.warning("storage check: node %s did not answer", node_id, exc_info=True)
            blind.append(node_id)
            continue
        if error:
            errors.append(error)
        if not seen or reply is None or not reply.exists():
            blind.append(node_id)
        if reply is not None:
            with contextlib.suppress(OSError):
                reply.unlink(missing_ok=True)
    return blind, errors


@ray.remote(num_cpus=0)
def _probe(marker: StoragePath, token: str) -> tuple[bool, StoragePath | None, str | None]:
    """On one node: whether the driver's marker is visible, a reply file written beside
    it, and what went wrong if either could not be done."""
    reply = marker.parent / f"{token}-{ray.get_runtime_context().get_node_id()}"
    try:
        seen = marker.is_file() and marker.read_text() == token
        reply.write_text(token)
    except OSError as exc:
        return False, None, str(exc)
    return seen, reply, None
