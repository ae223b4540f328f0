"""What the cluster can ever give one trial, so that the gateway can refuse at submit a
job that would otherwise wait forever for resources that never come.

A trial runs on one node, so what matters is the largest node of each kind: the nodes
alive now, and the node types the autoscaler may start (its maximums). Drivers publish
the shapes; the gateway reads them.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from shared import redis_keys
from shared.redis_client import RedisStore
from shared.spec import Resources

# Drivers refresh the published shapes well within this; a stale view expires.
CAPACITY_TTL_S = 300


class NodeShape(BaseModel):
    """The resources of one node, alive or a type the autoscaler can start."""

    name: str = Field(description="A node id, or an autoscaler node type.")
    cpu: float = 0.0
    gpu: float = 0.0


class Capacity(BaseModel):
    """Every node shape the cluster has or can get."""

    nodes: list[NodeShape]

    def refusal(self, resources: Resources) -> str | None:
        """Why no node could ever run one trial with ``resources``; None if one can."""
        if any(n.cpu >= resources.cpu and n.gpu >= resources.gpu for n in self.nodes):
            return None
        largest_cpu = max((n.cpu for n in self.nodes), default=0.0)
        largest_gpu = max((n.gpu for n in self.nodes), default=0.0)
        return (
            f"each trial asks for {resources.cpu:g} CPU and {resources.gpu:g} GPU, but no "
            f"node of this cluster has that much, counting the node types its autoscaler "
            f"can start (most on one node: {largest_cpu:g} CPU, {largest_gpu:g} GPU); "
            "ask for less per trial or add such nodes to the cluster"
        )


class CapacityStore(RedisStore):
    """The node shapes the drivers last published (and the autoscaler can start)."""

    def publish(self, capacity: Capacity) -> None:
        self._redis.set(redis_keys.CLUSTER_CAPACITY, capacity.model_dump_json(), ex=CAPACITY_TTL_S)

    def current(self) -> Capacity | None:
        """The last published shapes; None when no driver has published (yet)."""
        raw = self._redis.get(redis_keys.CLUSTER_CAPACITY)
        return Capacity.model_validate_json(raw) if raw else None
