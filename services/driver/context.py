"""JobContext: a claimed job as the driver hands it to an engine (tuning or scoring)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shared.jobs import JobStore
from shared.lease import Lease
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.vocabulary import DEFAULT_TENANT


def _never() -> bool:
    return False


@dataclass(frozen=True)
class JobContext:
    """What every engine is given with a job's spec: the driver's claim on it, whose job
    it is, the settings and stores it writes through, and when to stop (a cancel, a
    lost lease, the driver stopping)."""

    lease: Lease
    settings: Settings
    jobs: JobStore
    registry: ModelRegistry
    should_stop: Callable[[], bool] = field(default=_never)
    tenant: str = DEFAULT_TENANT

    @property
    def job_id(self) -> str:
        return self.lease.job_id
