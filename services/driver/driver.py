"""The driver's loop: claim a job, run it, record how it ended, take the next.

A heartbeat thread keeps the driver's health key and its job's lease alive, and reaps
jobs whose drivers died; another publishes the cluster's node shapes, so that a slow
``ray.nodes()`` never delays a lease renewal. If the lease is lost (this driver was
silent too long and the job went to another), the run stops rather than run twice, and
Redis refuses whatever it still tries to write. A driver told to stop (SIGTERM) stops
its trials and hands its job back to the queue without spending an attempt. Redis
errors during a job leave the job to be reclaimed; they never end the driver.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

import ray
import redis
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from services.driver import nodes, warm
from services.driver.batch import run_batch
from services.driver.context import JobContext
from services.driver.retention import sweep_batches, sweep_experiments
from services.driver.tuning import run_job
from shared.capacity import CapacityStore
from shared.errors import LeaseLostError, TunefleetError
from shared.jobs import JobStore
from shared.lease import Lease
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.spec import JobSpec
from shared.vocabulary import JobStatus

log = logging.getLogger(__name__)
REDIS_RETRY_S = 2.0
# Node shapes change when the autoscaler adds or removes nodes; publish them this often.
CAPACITY_REFRESH_S = 30.0
# A cancel is seen within this long. The packed engine asks after every pack's epoch:
# on a cluster with more slots than trials each trial is a pack of its own, and asking
# Redis every time doubled the driver's round trips per reported epoch.
CANCEL_CHECK_S = 0.5


class CancelCheck:
    """Whether a cancel was asked for one job, read from Redis at most every
    ``interval_s`` however often it is asked."""

    def __init__(self, jobs: JobStore, job_id: str, interval_s: float = CANCEL_CHECK_S) -> None:
        self._jobs = jobs
        self._job_id = job_id
        self._interval_s = interval_s
        self._next_check_at = 0.0
        self._cancelling = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelling and now >= self._next_check_at:
            self._next_check_at = now + self._interval_s
            self._cancelling = self._jobs.state(self._job_id) is JobStatus.CANCELLING
        return self._cancelling


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
        self._lease: Lease | None = None
        self._stopped = threading.Event()
        self._beat_interval_s = max(0.2, settings.lease_s / 3)
        assert settings.redis_url is not None
        self._capacity = CapacityStore.from_url(settings.redis_url)
        # The alive nodes when the storage was last found shared: checked again when
        # they change.
        self._storage_checked_for: frozenset[str] = frozenset()
        # Warm-up tasks in flight (kept so that their results are not dropped unread).
        self._warming: list[ray.ObjectRef] = []

    def run_forever(self) -> None:
        self._warm_workers()
        warm.warm_driver()
        try:  # now rather than in the first job's time; each job checks again
            self._check_storage()
        except TunefleetError as exc:
            log.warning("driver: %s", exc)
        # Live (GET /healthz counts it) once the workers are warm, or once they had
        # their time: a node that other jobs' trials fill warms when it can.
        wait_s = self._settings.driver_warm_wait_s
        ray.wait(self._warming, num_returns=len(self._warming), timeout=wait_s)
        log.info("driver %s: waiting for jobs", self.driver_id)
        self._beat_once()
        loops = (
            (self._heartbeat_loop, "heartbeat"),
            (self._capacity_loop, "capacity"),
            (self._housekeeping_loop, "housekeeping"),
        )
        for loop, name in loops:
            threading.Thread(target=loop, name=name, daemon=True).start()
        try:
            while not self._stopped.is_set():
                try:
                    lease = self._jobs.claim(self.driver_id, self._settings.driver_poll_s)
                except redis.RedisError as exc:
                    log.warning("driver: Redis unreachable (%s); retrying", exc)
                    time.sleep(REDIS_RETRY_S)
                    continue
                if lease is not None:
                    self.run_one(lease)
        finally:
            self._stopped.set()
            with contextlib.suppress(redis.RedisError):  # its heartbeat expires by itself
                self._jobs.drivers.forget(self.driver_id)
            log.info("driver %s: stopped", self.driver_id)

    def _warm_workers(self) -> None:
        """Start Ray's workers with the packed engine imported, one per CPU of every
        node, before the first job needs them. Ray keeps idle workers between tasks;
        they hold no CPU."""
        self._warming.clear()
        for node in ray.nodes():
            cpus = int(node["Resources"].get("CPU", 0)) if node.get("Alive") else 0
            on_node = NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)
            task = warm.warm_up.options(scheduling_strategy=on_node)
            self._warming += [task.remote() for _ in range(cpus)]

    def stop(self) -> None:
        """Stop after the current job's trials stop; the job goes back to the queue."""
        self._stopped.set()

    def run_one(self, lease: Lease) -> None:
        """Run a claimed job to its end state, or until its lease is lost or the driver
        stops (then hand it back). Nothing raised here ends the driver."""
        job_id = lease.job_id
        log.info("job %s: started by %s (claim %s)", job_id, self.driver_id, lease.token)
        self._lease = lease
        try:
            self._run(lease)
        except LeaseLostError as exc:
            log.warning("job %s: %s; leaving it to the driver that holds it", job_id, exc)
        except redis.RedisError as exc:
            log.warning(
                "job %s: Redis unreachable (%s); the job goes back to the queue when "
                "its lease runs out",
                job_id,
                exc,
            )
        finally:
            self._lease = None

    def _run(self, lease: Lease) -> None:
        job_id = lease.job_id
        cancelled = CancelCheck(self._jobs, job_id)
        try:
            job = self._jobs.get(job_id)
            self._check_storage()

            def stop() -> bool:
                return self._should_stop(lease, cancelled)

            context = JobContext(
                lease, self._settings, self._jobs, self._registry, stop, job.tenant
            )
            if isinstance(job.spec, JobSpec):
                run_job(context, job.spec)
            else:
                run_batch(context, job.spec)
        except (LeaseLostError, redis.RedisError):
            raise
        except TunefleetError as exc:
            log.info("job %s: failed: %s", job_id, exc)
            if not self._end_early(lease):
                self._jobs.fail(lease, str(exc))
        except Exception as exc:
            log.exception("job %s: failed unexpectedly", job_id)
            reason = f"the job failed unexpectedly: {type(exc).__name__}: {exc}"
            if not self._end_early(lease):
                self._jobs.fail(lease, reason)
        else:
            self._end_early(lease)
            log.info("job %s: %s", job_id, self._jobs.state(job_id))

    def _end_early(self, lease: Lease) -> bool:
        """The run stopped before the job's end: leave it (lease lost), mark it
        cancelled (a cancel was asked) or hand it back (this driver is stopping).
        False when none of these holds."""
        if lease.lost.is_set():
            raise LeaseLostError(f"job {lease.job_id}: claim {lease.token} has ended")
        state = self._jobs.state(lease.job_id)
        if state is JobStatus.CANCELLING:
            self._jobs.mark_cancelled(lease)
            return True
        if state is JobStatus.RUNNING and self._stopped.is_set():
            outcome = self._jobs.release(lease)
            log.info("job %s: handed back to the queue (%s)", lease.job_id, outcome)
            return True
        return False

    def _check_storage(self) -> None:
        alive = frozenset(node["NodeID"] for node in ray.nodes() if node.get("Alive"))
        if alive != self._storage_checked_for:
            nodes.check_shared_storage(self._settings.storage_root)
            self._storage_checked_for = alive

    def _should_stop(self, lease: Lease, cancelled: CancelCheck) -> bool:
        if lease.lost.is_set() or self._stopped.is_set():
            return True
        try:
            return cancelled()
        except redis.RedisError:  # the lease decides; Redis may be back by the next look
            return False

    def _heartbeat_loop(self) -> None:
        while not self._stopped.wait(self._beat_interval_s):
            try:
                self._beat_once()
            except redis.RedisError as exc:
                log.warning("driver: heartbeat failed (%s)", exc)
            except Exception:  # the thread must live on: it holds the job's lease
                log.exception("driver: heartbeat failed")

    def _beat_once(self) -> None:
        self._jobs.drivers.heartbeat(self.driver_id)
        lease = self._lease  # this job's lease: a lost one never marks the next job
        if lease is not None and not self._jobs.renew(lease):
            log.warning("job %s: lease lost; stopping its trials", lease.job_id)
        for reclaimed in self._jobs.reap():
            log.info("job %s: its driver went silent; back in the queue", reclaimed)

    def _capacity_loop(self) -> None:
        """Publish the node shapes the cluster has or can start, every CAPACITY_REFRESH_S."""
        while True:
            try:
                self._capacity.publish(nodes.capacity(self._settings.autoscaler_config))
            except Exception:  # a bad autoscaler config or Redis down: try again later
                log.exception("driver: could not publish the cluster's capacity")
            if self._stopped.wait(CAPACITY_REFRESH_S):
                return

    def _housekeeping_loop(self) -> None:
        """Trim finished jobs' experiment folders to their model's checkpoint once they
        are older than the retention, and drop expired jobs from the indexes; every
        ``housekeeping_interval_s`` (any number of drivers may do it at once)."""
        while not self._stopped.wait(self._settings.housekeeping_interval_s):
            try:
                swept = sweep_experiments(
                    self._settings.experiments_dir,
                    self._jobs,
                    self._registry,
                    keep_s=self._settings.experiment_retention_s,
                )
                sweep_batches(
                    self._settings.batches_dir,
                    self._jobs,
                    keep_s=self._settings.experiment_retention_s,
                )
                pruned = self._jobs.prune_indexes()
                models = self._registry.prune_index()
            except Exception:  # Redis away, a folder in use: the next round tries again
                log.exception("driver: housekeeping failed")
                continue
            if swept.job_ids:
                log.info(
                    "driver: trimmed %d finished jobs' folders (%d files, %d bytes)",
                    len(swept.job_ids),
                    swept.removed_files,
                    swept.removed_bytes,
                )
            log.debug("driver: index entries pruned: %s, models: %d", pruned, models)
