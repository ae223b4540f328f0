"""ResultStore: what a job's trials report while they run, in Redis.

The latest row of every trial (the results table), each trial's per-epoch history,
and an event stream per job that GET /jobs/{id}/events follows.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import redis
import redis.asyncio
from pydantic import BaseModel, Field

from shared import queue_scripts, redis_keys
from shared.errors import NotFoundError
from shared.vocabulary import Subject

# Event types in a job's stream: "job" when its state or progress changed (readers
# fetch the job), "trial" with a trial's latest row after each result.
JOB_CHANGED = "job"
EVENT_WAIT_MAX_S = 30
# Redis connections one gateway replica may hold for event streams (one per open stream).
EVENT_STREAM_CONNECTIONS = 4096
TRIAL_RESULT = "trial"


class TrialRow(BaseModel):
    """One trial as a user sees it: config, last and best metrics, progress and state."""

    trial_id: str
    state: str
    config: dict[str, Any]
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Metrics of the last epoch reported."
    )
    best_metrics: dict[str, float] = Field(
        default_factory=dict,
        description="Best value of each metric over the epochs (highest accuracy or R^2, "
        "lowest loss or RMSE).",
    )
    iterations: int = Field(default=0, description="Epochs reported.")
    time_total_s: float | None = Field(default=None, description="Training time so far.")
    node_id: str | None = Field(default=None, description="The Ray node it ran on.")
    early_stopped: bool = Field(
        default=False,
        description="Ended before its epochs were done: by the scheduler, a cancel or the "
        "job's time budget.",
    )
    device: str | None = Field(default=None, description="Where it trained: cpu or cuda:N.")
    error: str | None = None
    carried_from: str | None = Field(
        default=None,
        description="The earlier job this trial ran in, for a trial carried over by the "
        "spec's warm_start (it was not trained again).",
    )


class ResultStore:
    """Trial rows, histories and job events. The only place that touches their keys."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._record_trial = client.register_script(queue_scripts.RECORD_TRIAL)

    def record_trial(
        self,
        job_id: str,
        row: TrialRow,
        epoch: dict[str, Any] | None = None,
        lease_token: str = "",
    ) -> bool:
        """Store a trial's latest row, and with ``epoch`` that epoch's metrics. With the
        ``lease_token`` of a driver's claim, only while that claim holds; False if refused."""
        row_json = row.model_dump_json()
        iteration = str(int(epoch["training_iteration"])) if epoch is not None else ""
        return bool(
            self._record_trial(
                keys=[
                    redis_keys.job(job_id),
                    redis_keys.job_trials(job_id),
                    redis_keys.trial_history(job_id, row.trial_id),
                    redis_keys.job_events(job_id),
                ],
                args=[
                    lease_token,
                    redis_keys.JOB_EVENTS_KEPT,
                    row.trial_id,
                    row_json,
                    iteration,
                    json.dumps(epoch) if epoch is not None else "",
                ],
            )
        )

    def job_changed(self, job_id: str) -> None:
        """Tell the job's followers that its state or progress changed."""
        _append(self._redis, job_id, JOB_CHANGED, "")

    def trials(self, job_id: str) -> list[TrialRow]:
        """Every trial of the job that has started, in trial id order."""
        return [TrialRow.model_validate(record) for record in self.trial_records(job_id)]

    def trial_records(self, job_id: str) -> list[dict[str, Any]]:
        """The same rows as plain dicts, for tables of many thousands of trials."""
        raw: dict[str, str] = self._redis.hgetall(redis_keys.job_trials(job_id))  # type: ignore[assignment]
        return [json.loads(raw[trial_id]) for trial_id in sorted(raw)]

    def history(self, job_id: str, trial_id: str) -> list[dict[str, Any]]:
        """A trial's metrics per epoch, first epoch first; NotFoundError for no such trial."""
        raw: dict[str, str] = self._redis.hgetall(redis_keys.trial_history(job_id, trial_id))  # type: ignore[assignment]
        if not raw and not self._redis.hexists(redis_keys.job_trials(job_id), trial_id):
            raise NotFoundError(
                f"job {job_id} has no trial {trial_id!r}", subject=Subject.TRIAL, ref=job_id
            )
        return [json.loads(raw[i]) for i in sorted(raw, key=int)]


class EventFeed:
    """Reads a job's event stream without blocking the event loop (redis.asyncio)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> EventFeed:
        # Reads block for up to EVENT_WAIT_MAX_S: the client's default timeout (5 s) is
        # shorter. Each open stream holds a connection while it waits: redis-py's default
        # pool (100) would end the 101st stream.
        return cls(
            redis.asyncio.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=EVENT_WAIT_MAX_S + 10,
                max_connections=EVENT_STREAM_CONNECTIONS,
            )
        )

    async def last_id(self, job_id: str) -> str:
        """The id of the newest event, or "0-0" when there is none yet."""
        newest = await self._redis.xrevrange(redis_keys.job_events(job_id), count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def after(self, job_id: str, after_id: str, wait_s: float) -> list[tuple[str, str, str]]:
        """Events after ``after_id`` as (id, type, data), waiting up to ``wait_s``
        (at most EVENT_WAIT_MAX_S) for one."""
        # At least 1 ms: XREAD BLOCK 0 would wait for ever.
        block_ms = max(1, int(1000 * min(wait_s, EVENT_WAIT_MAX_S)))
        answer: Any = await self._redis.xread(
            {redis_keys.job_events(job_id): after_id}, block=block_ms
        )
        if not answer:
            return []
        return [(str(i), str(f["type"]), str(f.get("data", ""))) for i, f in answer[0][1]]


def best_first(records: list[dict[str, Any]], metric: str, mode: str) -> list[dict[str, Any]]:
    """Trial rows ordered by each trial's best value of ``metric`` (highest first for
    mode max; on a tie, the lower trial id first, as the job's best trial is chosen);
    trials that never reported it last."""
    reported = [r for r in records if metric in r.get("best_metrics", {})]
    unreported = [r for r in records if metric not in r.get("best_metrics", {})]
    reported.sort(key=lambda r: str(r["trial_id"]))
    reported.sort(key=lambda r: float(r["best_metrics"][metric]), reverse=mode == "max")
    return reported + unreported


def trials_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Trial rows as a flat table: one column per scalar, ``config/<name>``,
    ``metrics/<name>`` and ``best_metrics/<name>``."""
    flat = []
    for record in records:
        row = {k: v for k, v in record.items() if not isinstance(v, dict)}
        for group in ("config", "metrics", "best_metrics"):
            row.update({f"{group}/{k}": v for k, v in record.get(group, {}).items()})
        flat.append(row)
    return pd.DataFrame.from_records(flat)


def _append(client: Any, job_id: str, kind: str, data: str) -> None:
    client.xadd(
        redis_keys.job_events(job_id),
        {"type": kind, "data": data},
        maxlen=redis_keys.JOB_EVENTS_KEPT,
        approximate=True,
    )
