"""JobStore: the durable queue of tuning jobs and their records, in Redis.

A job is written and queued in one MULTI/EXEC transaction, so a job answered with
202 is always both recorded and queued. Drivers claim by *moving* an id from the
queue to the processing list (BLMOVE), never by popping, so a claimed job exists
in Redis until its driver acknowledges it.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis
from pydantic import BaseModel, Field

from shared import keys
from shared.errors import NotFoundError
from shared.spec import JobSpec
from shared.status import JobStatus

JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
# redis-py types hash mappings as invariant in their key type; our fields are str -> str.
Fields = dict[Any, Any]


class BestTrial(BaseModel):
    """The best trial so far, by the job's metric and mode."""

    trial_id: str
    metric: str
    value: float
    config: dict[str, Any]


class TrialRow(BaseModel):
    """One trial as a user sees it: its config, last metrics, iterations and state."""

    trial_id: str
    state: str
    config: dict[str, Any]
    metrics: dict[str, float] = Field(default_factory=dict)
    iterations: int = 0
    device: str | None = Field(default=None, description="Where it trained: cpu or cuda:N.")
    error: str | None = None


class JobView(BaseModel):
    """A job as the API answers it."""

    id: str
    name: str | None
    state: JobStatus
    spec: JobSpec
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    task: str | None = Field(default=None, description="classification or regression.")
    metric: str | None = Field(default=None, description="The metric the job optimises.")
    mode: str | None = None
    trials_total: int
    trials_done: int = 0
    best: BestTrial | None = None
    test_metrics: dict[str, float] | None = None
    error: str | None = None
    attempts: int = 0


def new_job_id() -> str:
    return uuid.uuid4().hex


class JobStore:
    """Jobs, their queue and their progress. The only place that touches job keys."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> JobStore:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    # -- submit and read -------------------------------------------------------------

    def enqueue(self, spec: JobSpec) -> str:
        """Record a job and queue it, atomically; return its id."""
        job_id = new_job_id()
        now = time.time()
        record: Fields = {
            "id": job_id,
            "spec": spec.model_dump_json(),
            "state": JobStatus.QUEUED.value,
            "submitted_at": repr(now),
            "trials_total": str(spec.trial_count()),
            "trials_done": "0",
            "attempts": "0",
        }
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.job(job_id), mapping=record)
            pipe.zadd(keys.JOBS, {job_id: now})
            pipe.lpush(keys.QUEUE, job_id)
            pipe.execute()
        return job_id

    def get(self, job_id: str) -> JobView:
        """The job's current view; NotFoundError if there is no such job."""
        raw: Fields = self._redis.hgetall(keys.job(job_id))
        if not raw:
            raise NotFoundError(f"no job with id {job_id!r}; GET /jobs lists the jobs")
        return _view(raw)

    def exists(self, job_id: str) -> bool:
        return bool(self._redis.exists(keys.job(job_id)))

    def recent(self, limit: int = 100) -> list[JobView]:
        """The newest jobs first."""
        ids: list[str] = self._redis.zrevrange(keys.JOBS, 0, limit - 1)  # type: ignore[assignment]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(keys.job(job_id))
            raws = pipe.execute()
        return [_view(raw) for raw in raws if raw]

    def trials(self, job_id: str) -> list[TrialRow]:
        """Every trial of the job that has started, in trial id order."""
        self.get(job_id)
        raw: Fields = self._redis.hgetall(keys.job_trials(job_id))
        return [TrialRow.model_validate_json(raw[trial_id]) for trial_id in sorted(raw)]

    def queue_depth(self) -> int:
        return int(self._redis.llen(keys.QUEUE))

    def running_count(self) -> int:
        return int(self._redis.llen(keys.PROCESSING))

    # -- the driver's side -----------------------------------------------------------

    def claim(self, timeout_s: float) -> str | None:
        """Take the oldest queued job, waiting up to ``timeout_s``; None if none came.

        The id moves to the processing list in the same command, so no other driver
        can be handed it.
        """
        # BLMOVE takes fractional seconds; redis-py's annotation says int.
        job_id: str | None = self._redis.blmove(  # type: ignore[assignment]
            keys.QUEUE,
            keys.PROCESSING,
            timeout_s,  # type: ignore[arg-type]
            "RIGHT",
            "LEFT",
        )
        if job_id is None:
            return None
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.job(job_id),
                mapping={"state": JobStatus.RUNNING.value, "started_at": repr(time.time())},
            )
            pipe.hincrby(keys.job(job_id), "attempts", 1)
            pipe.execute()
        return str(job_id)

    def record_objective(self, job_id: str, task: str, metric: str, mode: str) -> None:
        """Store the task and metric a running job settled on."""
        self._redis.hset(keys.job(job_id), mapping={"task": task, "metric": metric, "mode": mode})

    def record_trial(self, job_id: str, row: TrialRow) -> None:
        """Store the latest state and metrics of one trial."""
        self._redis.hset(keys.job_trials(job_id), row.trial_id, row.model_dump_json())

    def record_progress(self, job_id: str, trials_done: int, best: BestTrial | None) -> None:
        """Store how many trials have ended and the best trial so far."""
        mapping: Fields = {"trials_done": str(trials_done)}
        if best is not None:
            mapping["best"] = best.model_dump_json()
        self._redis.hset(keys.job(job_id), mapping=mapping)

    def succeed(self, job_id: str, best: BestTrial, test_metrics: dict[str, float]) -> None:
        """Mark the job succeeded with its best trial and test score, and acknowledge it."""
        self._finish(
            job_id,
            JobStatus.SUCCEEDED,
            {"best": best.model_dump_json(), "test_metrics": json.dumps(test_metrics)},
        )

    def fail(self, job_id: str, reason: str) -> None:
        """Mark the job failed with a reason a user can act on, and acknowledge it."""
        self._finish(job_id, JobStatus.FAILED, {"error": reason})

    def _finish(self, job_id: str, state: JobStatus, fields: Fields) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                keys.job(job_id),
                mapping={"state": state.value, "finished_at": repr(time.time()), **fields},
            )
            pipe.lrem(keys.PROCESSING, 1, job_id)
            pipe.execute()


def _view(raw: Fields) -> JobView:
    spec = JobSpec.model_validate_json(raw["spec"])
    return JobView(
        id=raw["id"],
        name=spec.name,
        state=JobStatus(raw["state"]),
        spec=spec,
        submitted_at=float(raw["submitted_at"]),
        started_at=float(raw["started_at"]) if "started_at" in raw else None,
        finished_at=float(raw["finished_at"]) if "finished_at" in raw else None,
        task=raw.get("task"),
        metric=raw.get("metric"),
        mode=raw.get("mode"),
        trials_total=int(raw["trials_total"]),
        trials_done=int(raw.get("trials_done", 0)),
        best=BestTrial.model_validate_json(raw["best"]) if "best" in raw else None,
        test_metrics=json.loads(raw["test_metrics"]) if "test_metrics" in raw else None,
        error=raw.get("error"),
        attempts=int(raw.get("attempts", 0)),
    )
