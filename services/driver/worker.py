"""The driver's loop: claim a job, run it, record how it ended, take the next.

A heartbeat thread keeps the driver's health key and its job's lease alive, and reaps
jobs whose drivers died. If the lease is lost (this driver was silent too long and the
job went to another), the run stops rather than run twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import ray
import redis
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from services.driver import cluster, pack_task
from services.driver.runner import run_job
from shared.capacity import CapacityStore
from shared.errors import TunefleetError
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.status import JobStatus

log = logging.getLogger(__name__)
REDIS_RETRY_S = 2.0
# Node shapes change when the autoscaler adds or removes nodes; publish them this often.
CAPACITY_REFRESH_S = 30.0


def new_driver_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Driver:
    """Consumes the job queue; one job's failure never stops it."""

    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        registry: ModelRegistry,
        driver_id: str | None = None,
    ) -> None:
        self._settings = settings
        self._jobs = jobs
        self._registry = registry
        self.driver_id = driver_id or new_driver_id()
        self._current: str | None = None
        self._lease_lost = threading.Event()
        self._stopped = threading.Event()
        self._beat_interval_s = max(0.2, settings.lease_s / 3)
        assert settings.redis_url is not None
        self._capacity = CapacityStore.from_url(settings.redis_url)
        self._capacity_at = -CAPACITY_REFRESH_S
        # The alive nodes when the storage was last found shared: checked again when
        # they change.
        self._storage_checked_for: frozenset[str] = frozenset()
        # Warm-up tasks in flight (kept so that their results are not dropped unread).
        self._warming: list[ray.ObjectRef] = []

    def run_forever(self) -> None:
        log.info("driver %s: waiting for jobs", self.driver_id)
        self._warm_workers()
        try:  # now rather than in the first job's time; each job checks again
            self._check_storage()
        except TunefleetError as exc:
            log.warning("driver: %s", exc)
        beat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        self._beat_once()
        beat.start()
        try:
            while not self._stopped.is_set():
                try:
                    job_id = self._jobs.claim(self.driver_id, self._settings.driver_poll_s)
                except redis.ConnectionError as exc:
                    log.warning("driver: Redis unreachable (%s); retrying", exc)
                    time.sleep(REDIS_RETRY_S)
                    continue
                if job_id is not None:
                    self.run_one(job_id)
        finally:
            self._stopped.set()
            self._jobs.forget_driver(self.driver_id)

    def _warm_workers(self) -> None:
        """Start Ray's workers with the packed engine imported, one per CPU of every
        node, before the first job needs them. Ray keeps idle workers between tasks;
        they hold no CPU."""
        self._warming.clear()
        for node in ray.nodes():
            cpus = int(node["Resources"].get("CPU", 0)) if node.get("Alive") else 0
            on_node = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
            task = pack_task.warm_up.options(scheduling_strategy=on_node)
            self._warming += [task.remote() for _ in range(cpus)]

    def stop(self) -> None:
        self._stopped.set()

    def run_one(self, job_id: str) -> None:
        """Run a claimed job to its end state (or until its lease is lost)."""
        log.info("job %s: started by %s", job_id, self.driver_id)
        self._current = job_id
        self._lease_lost.clear()
        try:
            job = self._jobs.get(job_id)
            self._check_storage()
            run_job(
                job_id,
                job.spec,
                self._settings,
                self._jobs,
                self._registry,
                should_stop=lambda: self._should_stop(job_id),
                tenant=job.tenant,
            )
        except TunefleetError as exc:
            log.info("job %s: failed: %s", job_id, exc)
            message = str(exc)
            self._finish_unless_lost(job_id, lambda: self._jobs.fail(job_id, message))
        except Exception as exc:
            log.exception("job %s: failed unexpectedly", job_id)
            reason = f"the job failed unexpectedly: {type(exc).__name__}: {exc}"
            self._finish_unless_lost(job_id, lambda: self._jobs.fail(job_id, reason))
        else:
            # Stopped early: cancelled (mark it so) or taken over (leave it alone).
            self._finish_unless_lost(job_id, lambda: None)
            log.info("job %s: %s", job_id, self._jobs.state(job_id))
        finally:
            self._current = None

    def _check_storage(self) -> None:
        alive = frozenset(node["NodeID"] for node in ray.nodes() if node.get("Alive"))
        if alive != self._storage_checked_for:
            cluster.check_shared_storage(self._settings.storage_root)
            self._storage_checked_for = alive

    def _should_stop(self, job_id: str) -> bool:
        return self._lease_lost.is_set() or self._jobs.state(job_id) is JobStatus.CANCELLING

    def _finish_unless_lost(self, job_id: str, finish: Callable[[], None]) -> None:
        if self._lease_lost.is_set():
            log.warning("job %s: lease lost; leaving it to the driver that holds it", job_id)
            return
        if self._jobs.state(job_id) is JobStatus.CANCELLING:
            self._jobs.mark_cancelled(job_id)
            return
        finish()

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self._beat_interval_s):
            try:
                self._beat_once()
            except redis.RedisError as exc:
                log.warning("driver: heartbeat failed (%s)", exc)
            except Exception:  # the thread must live on: it holds the job's lease
                log.exception("driver: heartbeat failed")

    def _beat_once(self) -> None:
        self._jobs.heartbeat(self.driver_id)
        job_id = self._current
        if job_id is not None and not self._jobs.renew(job_id, self.driver_id):
            log.warning("job %s: lease lost; stopping its trials", job_id)
            self._lease_lost.set()
        for reclaimed in self._jobs.reap():
            log.info("job %s: its driver went silent; back in the queue", reclaimed)
        if time.monotonic() - self._capacity_at >= CAPACITY_REFRESH_S:
            self._capacity_at = time.monotonic()
            try:
                self._capacity.publish(cluster.capacity(self._settings.autoscaler_config))
            except Exception:  # a bad autoscaler config must not stop the lease renewals
                log.exception("driver: could not publish the cluster's capacity")
