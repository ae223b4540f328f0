"""The driver's loop: claim a job, run it, record how it ended, take the next."""

from __future__ import annotations

import logging
import time

import redis

from services.driver.runner import run_job
from shared.errors import TunefleetError
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings

log = logging.getLogger(__name__)
REDIS_RETRY_S = 2.0


class Driver:
    """Consumes the job queue; one job's failure never stops it."""

    def __init__(self, settings: Settings, jobs: JobStore, registry: ModelRegistry) -> None:
        self._settings = settings
        self._jobs = jobs
        self._registry = registry

    def run_forever(self) -> None:
        log.info("driver: waiting for jobs")
        while True:
            try:
                job_id = self._jobs.claim(timeout_s=self._settings.driver_poll_s)
            except redis.ConnectionError as exc:
                log.warning("driver: Redis unreachable (%s); retrying", exc)
                time.sleep(REDIS_RETRY_S)
                continue
            if job_id is not None:
                self.run_one(job_id)

    def run_one(self, job_id: str) -> None:
        """Run a claimed job to its end state."""
        log.info("job %s: started", job_id)
        try:
            spec = self._jobs.get(job_id).spec
            run_job(job_id, spec, self._settings, self._jobs, self._registry)
        except TunefleetError as exc:
            log.info("job %s: failed: %s", job_id, exc)
            self._jobs.fail(job_id, str(exc))
        except Exception as exc:
            log.exception("job %s: failed unexpectedly", job_id)
            self._jobs.fail(job_id, f"the job failed unexpectedly: {type(exc).__name__}: {exc}")
        else:
            log.info("job %s: succeeded", job_id)
