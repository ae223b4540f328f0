"""The embedded local stack (Redis, Ray, Serve, driver), the `tunefleet` CLI, and the
Python SDK: ``from cluster import Client`` (see cluster.sdk)."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Imported on first use: the stack and the CLI's other parts need no pandas.
    if name in ("Client", "Job"):
        from cluster import sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'cluster' has no attribute {name!r}")
