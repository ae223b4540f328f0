"""A running job's spec as its owner last edited it (PATCH /jobs/{id}): the engines ask
for it as they go, and follow a new concurrency limit and time budget."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from shared.jobs import JobStore
from shared.spec import JobSpec

log = logging.getLogger(__name__)

# How often Redis is asked whether the job was edited, however often the engine asks.
EDIT_CHECK_S = 1.0


class LiveSpec:
    """The job's spec, read again from Redis when its edit count moves; ``limit``
    applies the operator's caps to each version, as to the first."""

    def __init__(
        self,
        jobs: JobStore,
        job_id: str,
        spec: JobSpec,
        limit: Callable[[JobSpec], JobSpec] = lambda spec: spec,
        interval_s: float = EDIT_CHECK_S,
    ) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._spec = spec
        self._limit = limit
        self._interval_s = interval_s
        self._next_check_at = 0.0
        self._seen = 0  # the spec a job is claimed with has had no edits, or some

    def __call__(self) -> JobSpec:
        now = time.monotonic()
        if now < self._next_check_at:
            return self._spec
        self._next_check_at = now + self._interval_s
        try:
            count = self._jobs.edit_count(self._job_id)
            if count != self._seen:
                stored = self._jobs.get(self._job_id).spec
                if isinstance(stored, JobSpec):
                    self._spec = self._limit(stored)
                    log.info(
                        "job %s: edited: max_concurrent_trials %s, time_budget_s %s",
                        self._job_id,
                        self._spec.max_concurrent_trials,
                        self._spec.time_budget_s,
                    )
                self._seen = count
        except redis.RedisError:  # the spec as it was; Redis may be back by the next look
            pass
        return self._spec
