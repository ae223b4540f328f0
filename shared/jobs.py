"""JobStore: the durable queue of jobs and their records, in Redis.

Delivery is at least once, with leases. Each transition is one Lua script, so it is
atomic: a job is recorded and queued together (or not at all); claiming *moves* an id
from its priority queue into the processing set with a lease deadline, so a claimed
job exists in Redis until its driver finishes it; a driver renews its lease while it
runs, and any driver puts a job whose lease ran out back at the head of its queue
(the reaper), or fails it after ``max_attempts``.

Each claim carries a fencing token (a ``Lease``). Every write a driver makes for its
job (progress, trial rows, the end state, the model) shows the token and is refused
once the claim has ended, so a driver that was paused past its lease cannot finish
a job that another driver now holds. Lease deadlines are Redis's clock, not a driver's.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from shared import queue_scripts, redis_keys
from shared.batch import BatchSpec
from shared.drivers import DriverRegistry
from shared.errors import (
    ConflictError,
    LeaseLostError,
    NotFoundError,
    QueueFullError,
    TooManyJobsError,
)
from shared.index_pruning import PrunedIndexes, prune_job_indexes
from shared.job_views import BestTrial, JobView, job_view
from shared.lease import Lease
from shared.redis_client import RedisStore
from shared.results import ResultStore, TrialRow
from shared.settings import QueuePolicy
from shared.spec import JobSpec
from shared.vocabulary import DEFAULT_TENANT, PRIORITIES, JobStatus, StopReason, Subject

# Index entries ZSCAN looks at per call while matching a prefix.
PREFIX_SCAN_COUNT = 1000
# redis-py types hash mappings as invariant in their key type; our fields are str -> str.
Fields = dict[Any, Any]


def new_job_id() -> str:
    return uuid.uuid4().hex


# How an error says a job has ended, or is ending, by its state.
ENDED_AS = {
    "succeeded": "has already succeeded",
    "failed": "has already failed",
    "cancelled": "has already been cancelled",
    "cancelling": "is being cancelled",
}


class JobStore(RedisStore):
    """Jobs, their queue and their progress: the only place that touches job keys. The
    progress is here, with the queue, because every write of it is fenced by the job's
    lease (one script); trials and events are ``results``, live drivers ``drivers``."""

    def __init__(
        self,
        client: redis.Redis,
        policy: QueuePolicy | None = None,
        *,
        results: ResultStore | None = None,
        drivers: DriverRegistry | None = None,
    ) -> None:
        """``results`` and ``drivers`` are built on ``client`` unless given: a service
        passes the ones it also uses itself."""
        super().__init__(client)
        self.policy = policy or QueuePolicy.default()
        self._enqueue = client.register_script(queue_scripts.ENQUEUE)
        self._claim = client.register_script(queue_scripts.CLAIM)
        self._renew = client.register_script(queue_scripts.RENEW)
        self._reap = client.register_script(queue_scripts.REAP)
        self._cancel = client.register_script(queue_scripts.CANCEL)
        self._edit = client.register_script(queue_scripts.EDIT)
        self._depths = client.register_script(queue_scripts.DEPTHS)
        self._update = client.register_script(queue_scripts.UPDATE)
        self._finish_script = client.register_script(queue_scripts.FINISH)
        self._release = client.register_script(queue_scripts.RELEASE)
        # Trials, histories and events of the jobs, and the drivers that run them.
        self.results = results or ResultStore(client)
        self.drivers = drivers or DriverRegistry(client, self.policy.lease_s)

    @classmethod
    def from_url(cls, url: str, policy: QueuePolicy | None = None) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True), policy)

    # -- submit, read, cancel ----------------------------------------------------------

    def enqueue(
        self,
        spec: JobSpec | BatchSpec,
        idempotency_key: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> tuple[str, bool]:
        """Record a job of ``tenant`` and queue it, atomically; return (job id, created).

        With an idempotency key the tenant already used, nothing is written and the
        first job's id comes back with created False. QueueFullError when the queue is
        full; TooManyJobsError when the tenant has its limit of queued and running jobs.
        """
        job_id = new_job_id()
        now = time.time()
        record: Fields = {
            "id": job_id,
            "spec": spec.model_dump_json(),
            "state": JobStatus.QUEUED.value,
            "priority": spec.priority,
            "submitted_at": repr(now),
            "trials_total": str(spec.trial_count()) if isinstance(spec, JobSpec) else "0",
            "trials_done": "0",
            "attempts": "0",
            "tenant": tenant,
        }
        if isinstance(spec, BatchSpec):  # a tuning job's record has no kind: as before
            record.update(kind=spec.kind, rows_total=str(spec.rows), rows_done="0")
        fields = [item for pair in record.items() for item in pair]
        outcome, value = self._enqueue(
            keys=[
                redis_keys.job(job_id),
                redis_keys.JOBS,
                # Per tenant: one tenant's key never answers another tenant's job.
                redis_keys.idempotency(f"{tenant}:{idempotency_key or ''}"),
                redis_keys.tenant_jobs(tenant),
                redis_keys.tenant_active(tenant),
            ],
            args=[
                job_id,
                repr(now),
                self.policy.max_queued,
                self.policy.idempotency_ttl_s if idempotency_key else 0,
                self.policy.max_active_per_tenant,
                spec.priority,
                tenant,
                *fields,
            ],
        )
        if outcome == "full":
            raise QueueFullError(f"the queue holds {value} jobs, its limit; submit again later")
        if outcome == "tenant_full":
            raise TooManyJobsError(
                f"tenant {tenant} has {value} queued and running jobs, its limit "
                "(TUNEFLEET_MAX_ACTIVE_JOBS_PER_TENANT); submit again when some have ended"
            )
        return str(value), outcome == "created"

    def cancel(self, job_id: str) -> JobView:
        """Cancel a job: a queued one at once, a running one once its trials stop."""
        outcome = self._cancel(
            keys=[redis_keys.job(job_id)], args=[job_id, self.policy.retention_s]
        )
        return self._changed(job_id, outcome, "has already ended ({raw}); nothing to cancel")

    def edit(
        self,
        job_id: str,
        spec: JobSpec,
        priority: str | None = None,
        read_at: int = 0,
        only_queued: bool = False,
    ) -> JobView | None:
        """Store a queued or running job's edited spec, and move a queued job to the
        back of the line of a new ``priority``; None (nothing written) if the job was
        edited after its spec was read (its ``edits`` was ``read_at``): read it again.
        ConflictError once it has ended (or is being cancelled), or, ``only_queued``,
        once it runs. A running job's driver follows the edit (edit_count)."""
        outcome = self._edit(
            keys=[redis_keys.job(job_id)],
            args=[
                job_id,
                spec.model_dump_json(),
                spec.trial_count(),
                priority or "",
                read_at,
                "1" if only_queued else "0",
            ],
        )
        if outcome == "stale":
            return None
        if outcome.startswith("not_queued:"):
            raise ConflictError(
                f"job {job_id} is {outcome.removeprefix('not_queued:')}; num_samples of a "
                "random search that runs unpacked (packing off, or hyperband) can be raised "
                "while it is queued"
            )
        return self._changed(job_id, outcome, "{state}; only a queued or running job can be edited")

    def _changed(self, job_id: str, outcome: str, refusal: str) -> JobView:
        """The job's view after a script changed it; NotFoundError if it does not exist,
        ConflictError (``refusal``, of its state) if it had ended: "ended:<state>"."""
        if outcome == "missing":
            raise NotFoundError.no(Subject.JOB, job_id)
        if outcome.startswith("ended:"):
            raw = outcome.removeprefix("ended:")
            raise ConflictError(f"job {job_id} {refusal.format(state=ENDED_AS[raw], raw=raw)}")
        self.results.job_changed(job_id)
        return self.get(job_id)

    def edit_count(self, job_id: str) -> int:
        """How many times the job's spec was edited: a driver reads the spec again when
        this moves."""
        return int(self._redis.hget(redis_keys.job(job_id), "edits") or 0)

    def get(self, job_id: str) -> JobView:
        """The job's current view; NotFoundError if there is no such job."""
        raw: Fields = self._redis.hgetall(redis_keys.job(job_id))
        if not raw:
            raise NotFoundError.no(Subject.JOB, job_id)
        return job_view(raw)

    def exists(self, job_id: str) -> bool:
        return bool(self._redis.exists(redis_keys.job(job_id)))

    def recent(self, limit: int = 100, tenant: str | None = None) -> list[JobView]:
        """The newest jobs first: every tenant's, or one tenant's."""
        index = redis_keys.JOBS if tenant is None else redis_keys.tenant_jobs(tenant)
        ids: list[str] = self._redis.zrevrange(index, 0, limit - 1)  # type: ignore[assignment]
        return self._views_in(index, ids)

    def with_id_prefix(
        self, prefix: str, limit: int = 100, tenant: str | None = None
    ) -> list[JobView]:
        """The jobs whose id starts with ``prefix``, newest first (every tenant's, or one
        tenant's): what a short id can name, however old the job."""
        index = redis_keys.JOBS if tenant is None else redis_keys.tenant_jobs(tenant)
        # Ids are random, so no score range holds a prefix: ZSCAN walks the index on the
        # server (prefix is hex only, no glob characters) and answers only the matches.
        scored = self._redis.zscan_iter(index, match=f"{prefix}*", count=PREFIX_SCAN_COUNT)
        found: dict[str, float] = dict(scored)
        newest_first = sorted(found, key=found.__getitem__, reverse=True)
        return self._views_in(index, newest_first[:limit])

    def _views_in(self, index: str, ids: list[str]) -> list[JobView]:
        """The views of ``ids`` from ``index``; ids whose record is gone leave it."""
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(redis_keys.job(job_id))
            raws = pipe.execute()
        expired = [job_id for job_id, raw in zip(ids, raws, strict=True) if not raw]
        if expired:  # records past their retention leave the index lazily
            self._redis.zrem(index, *expired)
        return [job_view(raw) for raw in raws if raw]

    def queue_depths(self) -> dict[str, int]:
        """Queued jobs per priority."""
        depths = self._depths()
        return dict(zip(PRIORITIES, (int(d) for d in depths), strict=True))

    def queue_depth(self) -> int:
        return sum(self.queue_depths().values())

    def active(self, tenant: str) -> list[JobView]:
        """A tenant's queued, running and cancelling jobs (its active set, which the
        submit script keeps; ended ones it still names are left out)."""
        ids: list[str] = self._redis.smembers(redis_keys.tenant_active(tenant))  # type: ignore[assignment]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(redis_keys.job(job_id))
            raws = pipe.execute()
        views = [job_view(raw) for raw in raws if raw]
        return [view for view in views if not view.state.is_terminal()]

    def prune_indexes(self) -> PrunedIndexes:
        """Drop jobs whose records have expired from the job indexes (see
        shared.index_pruning)."""
        return prune_job_indexes(self._redis)

    def queued_by_tenant(self) -> dict[tuple[str, str], int]:
        """Queued jobs per (priority, tenant), for tenants with jobs queued."""
        found: dict[tuple[str, str], int] = {}
        for priority in PRIORITIES:
            round_key = redis_keys.QUEUE_TENANTS_PREFIX + priority
            tenants: list[str] = self._redis.zrange(round_key, 0, -1)  # type: ignore[assignment]
            with self._redis.pipeline(transaction=False) as pipe:
                for tenant in tenants:
                    pipe.llen(redis_keys.queue(priority, tenant))
                depths = pipe.execute()
            for tenant, depth in zip(tenants, depths, strict=True):
                if depth:
                    found[(priority, tenant)] = int(depth)
        return found

    def trials_running(self) -> int:
        """Trials training now, over every running job."""
        running: list[str] = self._redis.zrange(redis_keys.PROCESSING, 0, -1)  # type: ignore[assignment]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in running:
                pipe.hget(redis_keys.job(job_id), "trials_running")
            counts = pipe.execute()
        return sum(int(c) for c in counts if c)

    def stats(self) -> dict[str, float]:
        """The queue's counters (see redis_keys.STATS): name -> value."""
        raw: dict[str, str] = self._redis.hgetall(redis_keys.STATS)  # type: ignore[assignment]
        return {name: float(value) for name, value in raw.items()}

    def running_count(self) -> int:
        return int(self._redis.zcard(redis_keys.PROCESSING))

    def state(self, job_id: str) -> JobStatus | None:
        raw = self._redis.hget(redis_keys.job(job_id), "state")
        return JobStatus(str(raw)) if raw else None

    # -- the driver's side -----------------------------------------------------------

    def claim(self, driver_id: str, timeout_s: float = 0.0) -> Lease | None:
        """Take the next queued job, waiting up to ``timeout_s``; None if none came. The
        job is leased to ``driver_id``. High, then normal, then low (a job that waited
        ``aging_s`` moves up one); within a priority the tenants take turns, each
        tenant's jobs oldest first; a tenant running ``max_running_per_tenant`` jobs
        waits."""
        deadline = time.monotonic() + timeout_s
        while True:
            claimed = self._claim(
                keys=[redis_keys.PROCESSING],
                args=[
                    _ms(self.policy.lease_s),
                    driver_id,
                    self.policy.max_running_per_tenant,
                    self.policy.aging_s,
                ],
            )
            if claimed:
                job_id, token = (str(part) for part in claimed)
                self.results.job_changed(job_id)
                return Lease(job_id, token)
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(CLAIM_POLL_S, max(0.0, deadline - time.monotonic())))

    def renew(self, lease: Lease) -> bool:
        """Extend a lease; False (and the lease marked lost) if the claim has ended."""
        renewed = self._renew(
            keys=[redis_keys.PROCESSING, redis_keys.job(lease.job_id)],
            args=[lease.job_id, lease.token, _ms(self.policy.lease_s)],
        )
        if not renewed:
            lease.lost.set()
        return bool(renewed)

    def release(self, lease: Lease) -> str:
        """Hand a job back to the head of its queue without spending an attempt (its
        driver is stopping); "queued", "cancelled" (a cancel was asked) or "lost"."""
        outcome = str(
            self._release(
                keys=[redis_keys.job(lease.job_id), redis_keys.PROCESSING],
                args=[lease.token, lease.job_id, self.policy.retention_s],
            )
        )
        if outcome == "lost":
            lease.lost.set()
        else:
            self.results.job_changed(lease.job_id)
        return outcome

    def reap(self) -> list[str]:
        """Requeue (or fail, after max_attempts) the jobs whose lease ran out."""
        moved = self._reap(
            keys=[redis_keys.PROCESSING], args=[self.policy.max_attempts, self.policy.retention_s]
        )
        for job_id in moved:
            self.results.job_changed(str(job_id))
        return [str(job_id) for job_id in moved]

    def record_objective(self, lease: Lease, task: str, metric: str, mode: str) -> None:
        """Store the task and metric a running job settled on."""
        self._update_running(lease, {"task": task, "metric": metric, "mode": mode})

    def record_data(self, lease: Lease, rows: int, rows_without_target: int) -> None:
        """Store how many rows a running job trains, validates and tests on, and how
        many it left out for having no target."""
        self._update_running(
            lease, {"rows_used": str(rows), "rows_without_target": str(rows_without_target)}
        )

    def record_engine(self, lease: Lease, engine: str) -> None:
        """Store how the job's trials run (packed, or unpacked and why)."""
        self._update_running(lease, {"engine": engine})

    def record_progress(
        self, lease: Lease, trials_done: int, trials_running: int, best: BestTrial | None
    ) -> None:
        """Store how many trials have ended and run now, and the best trial so far."""
        mapping: Fields = {"trials_done": str(trials_done), "trials_running": str(trials_running)}
        if best is not None:
            mapping["best"] = best.model_dump_json()
        self._update_running(lease, mapping)

    def record_trial(self, lease: Lease, row: TrialRow, epoch: dict[str, Any] | None) -> None:
        """Store a trial's latest row, and with ``epoch`` that epoch's metrics."""
        if not self.results.record_trial(lease.job_id, row, epoch, lease.token):
            self._lost(lease)

    def record_rows(self, lease: Lease, rows_done: int) -> None:
        """Store how many rows a running batch job has scored."""
        self._update_running(lease, {"rows_done": str(rows_done)})

    def succeed_batch(self, lease: Lease, rows_done: int, nodes: list[str]) -> None:
        """Mark a batch job succeeded once its output is whole, and acknowledge it: the
        output this lease's attempt wrote is the job's (LeaseLostError if the lease has
        ended: another attempt's output, or none, is). ``nodes``: the Ray nodes that
        scored it."""
        self._finish(
            lease,
            JobStatus.SUCCEEDED,
            {
                "rows_done": str(rows_done),
                "output_attempt": lease.token,
                "scored_on": ",".join(sorted(set(nodes))),
            },
        )

    def succeed(
        self,
        lease: Lease,
        best: BestTrial,
        test_metrics: dict[str, float],
        stopped_by: StopReason | None = None,
    ) -> None:
        """Mark the job succeeded with its best trial and test score, and acknowledge it;
        ``stopped_by``: the rule that ended it before every trial had run."""
        fields = {"best": best.model_dump_json(), "test_metrics": json.dumps(test_metrics)}
        if stopped_by is not None:
            fields["stopped_by"] = stopped_by
        self._finish(lease, JobStatus.SUCCEEDED, fields)

    def fail(self, lease: Lease, reason: str) -> None:
        """Mark the job failed with a reason a user can act on, and acknowledge it."""
        self._finish(lease, JobStatus.FAILED, {"error": reason})

    def mark_cancelled(self, lease: Lease) -> None:
        """Mark a job whose trials have stopped cancelled, and acknowledge it."""
        self._finish(lease, JobStatus.CANCELLED, {})

    def _update_running(self, lease: Lease, mapping: Fields) -> None:
        fields = [item for pair in mapping.items() for item in pair]
        written = self._update(
            keys=[redis_keys.job(lease.job_id), redis_keys.job_events(lease.job_id)],
            args=[lease.token, redis_keys.JOB_EVENTS_KEPT, *fields],
        )
        if not written:
            self._lost(lease)

    def _finish(self, lease: Lease, state: JobStatus, fields: Fields) -> None:
        retention_s = self.policy.retention_s
        flat = [item for pair in fields.items() for item in pair]
        finished = self._finish_script(
            keys=[redis_keys.job(lease.job_id), redis_keys.PROCESSING],
            args=[lease.token, lease.job_id, state.value, retention_s, *flat],
        )
        if not finished:
            self._lost(lease)
        self.results.job_changed(lease.job_id)

    def _lost(self, lease: Lease) -> None:
        lease.lost.set()
        holder = self._redis.hget(redis_keys.job(lease.job_id), "lease")
        raise LeaseLostError(
            f"job {lease.job_id}: claim {lease.token} has ended (the job's claim now: "
            f"{str(holder) if holder else 'none'}); this driver's write was refused"
        )


CLAIM_POLL_S = 0.2


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
