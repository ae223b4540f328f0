"""Lease: a driver's claim on one job, as the queue's scripts fence it (a leaf: the
stores that take one import nothing else for it)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Lease:
    """A driver's claim on one job. ``token`` fences the claim's writes; ``lost`` is set
    once the claim has ended under the driver (not renewed in time, or a write refused)."""

    job_id: str
    token: str
    lost: threading.Event = field(default_factory=threading.Event, compare=False)
