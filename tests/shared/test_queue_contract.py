"""The queue's contract in two tables: each of its scripts (claim, renew, reap, finish,
release, cancel, edit) from each state a job can be in, with the answer and the state
it leaves; and the order claims take jobs in (first in first out, priority, tenants'
turns, aging, a tenant's running limit). The finer cases (fencing, Redis's clock,
retention) each have their own test in test_jobs.py."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from shared.errors import ConflictError, LeaseLostError
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.lease import Lease
from shared.settings import QueuePolicy
from shared.vocabulary import JobStatus
from tests.helpers.factories import spec

LEASE_S = 0.3
BEST = BestTrial(trial_id="t", metric="val_accuracy", value=0.9, config={})


@dataclass
class Case:
    """A job brought to ``start``, then ``action``: what it answers, and the job after."""

    start: str
    action: str
    answers: Any  # a value, or an exception type the action raises
    state: JobStatus
    attempts: int


def bring(store: JobStore, start: str) -> tuple[str, Lease]:
    """A job in state ``start``, and the lease a driver holds (or held) on it."""
    job_id, _ = store.enqueue(spec(start))
    if start == "queued":
        return job_id, Lease(job_id, "never-claimed#1")
    lease = store.claim("driver")
    assert lease is not None and lease.job_id == job_id
    if start == "lease ran out":
        time.sleep(LEASE_S + 0.2)
    elif start == "cancelling":
        store.cancel(job_id)
    elif start == "succeeded":
        store.succeed(lease, BEST, {})
    elif start == "failed":
        store.fail(lease, "it broke")
    elif start == "cancelled":
        store.cancel(job_id)
        store.mark_cancelled(lease)
    return job_id, lease


ACTIONS: dict[str, Callable[[JobStore, str, Lease], Any]] = {
    "claim": lambda store, job_id, lease: (found := store.claim("other")) and found.job_id,
    "renew": lambda store, job_id, lease: store.renew(lease),
    "reap": lambda store, job_id, lease: store.reap(),
    "finish": lambda store, job_id, lease: store.succeed(lease, BEST, {}),
    "release": lambda store, job_id, lease: store.release(lease),
    "cancel": lambda store, job_id, lease: store.cancel(job_id).state,
    "edit": lambda store, job_id, lease: store.edit(job_id, spec("edited")) is not None,
}

JOB = "<job>"  # the job's own id, in an answer
CASES = [
    # A queued job: a driver claims it; no lease of it can write; a cancel ends it.
    Case("queued", "claim", JOB, JobStatus.RUNNING, 1),
    Case("queued", "renew", False, JobStatus.QUEUED, 0),
    Case("queued", "reap", [], JobStatus.QUEUED, 0),
    Case("queued", "finish", LeaseLostError, JobStatus.QUEUED, 0),
    Case("queued", "release", "lost", JobStatus.QUEUED, 0),
    Case("queued", "cancel", JobStatus.CANCELLED, JobStatus.CANCELLED, 0),
    Case("queued", "edit", True, JobStatus.QUEUED, 0),
    # A running job: its lease renews and finishes it; handed back, it is queued again
    # without spending an attempt; a cancel asks its driver to stop.
    Case("running", "claim", None, JobStatus.RUNNING, 1),
    Case("running", "renew", True, JobStatus.RUNNING, 1),
    Case("running", "reap", [], JobStatus.RUNNING, 1),
    Case("running", "finish", None, JobStatus.SUCCEEDED, 1),
    Case("running", "release", "queued", JobStatus.QUEUED, 0),
    Case("running", "cancel", JobStatus.CANCELLING, JobStatus.CANCELLING, 1),
    Case("running", "edit", True, JobStatus.RUNNING, 1),
    # Its lease ran out (the driver died): the reaper queues it again, at the head of
    # its line; until then no one else may claim it, and its old lease can still renew.
    Case("lease ran out", "claim", None, JobStatus.RUNNING, 1),
    Case("lease ran out", "reap", [JOB], JobStatus.QUEUED, 1),
    Case("lease ran out", "cancel", JobStatus.CANCELLING, JobStatus.CANCELLING, 1),
    # Cancelling: its driver finishes the cancel, or hands it back (which ends it).
    Case("cancelling", "release", "cancelled", JobStatus.CANCELLED, 1),
    Case("cancelling", "cancel", JobStatus.CANCELLING, JobStatus.CANCELLING, 1),
    Case("cancelling", "edit", ConflictError, JobStatus.CANCELLING, 1),
    # An ended job stays as it ended, whatever comes.
    *(
        Case(ended, action, answer, status, 1)
        for ended, status in [
            ("succeeded", JobStatus.SUCCEEDED),
            ("failed", JobStatus.FAILED),
            ("cancelled", JobStatus.CANCELLED),
        ]
        for action, answer in [
            ("claim", None),
            ("renew", False),
            ("reap", []),
            ("finish", LeaseLostError),
            ("release", "lost"),
            ("cancel", ConflictError),
            ("edit", ConflictError),
        ]
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.start}-{case.action}")
def test_each_script_from_each_state(redis_client: redis.Redis, case: Case) -> None:
    store = JobStore(redis_client, QueuePolicy.default(lease_s=LEASE_S))
    job_id, lease = bring(store, case.start)
    act = ACTIONS[case.action]
    if isinstance(case.answers, type) and issubclass(case.answers, Exception):
        with pytest.raises(case.answers):
            act(store, job_id, lease)
    else:
        answer = act(store, job_id, lease)
        expected = case.answers
        if expected == JOB or expected == [JOB]:
            expected = job_id if expected == JOB else [job_id]
        assert answer == expected
    job = store.get(job_id)
    assert (job.state, job.attempts) == (case.state, case.attempts)


# The order claims take jobs in: each row queues jobs as (name, tenant, priority), waits
# ``aged_s`` after the first, and names the jobs the claims take, in order. The
# ``running`` row keeps each claimed job running (fair share counts running jobs).
ORDERS = [
    ("first in, first out", {}, [("a", "t", "normal"), ("b", "t", "normal")], 0, "ab"),
    ("priority first", {}, [("a", "t", "low"), ("b", "t", "normal"), ("c", "t", "high")], 0, "cba"),
    ("tenants take turns", {}, [("a", "x", "normal"), ("b", "x", "normal"), ("c", "y", "normal")],
     0, "acb"),
    ("aging moves a waiting job up", {"aging_s": 0.4},
     [("a", "t", "low"), ("b", "t", "normal")], 0.5, "ab"),
    ("a tenant at its running limit waits", {"max_running_per_tenant": 1},
     [("a", "x", "normal"), ("b", "x", "normal"), ("c", "y", "normal")], 0, "ac"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "queued", "aged_s", "order"),
    [row[1:] for row in ORDERS],
    ids=[row[0] for row in ORDERS],
)
def test_claims_take_jobs_in_the_queues_order(
    redis_client: redis.Redis,
    policy: dict[str, float],
    queued: list[tuple[str, str, str]],
    aged_s: float,
    order: str,
) -> None:
    store = JobStore(redis_client, QueuePolicy.default(**policy))
    ids = {}
    for index, (name, tenant, priority) in enumerate(queued):
        job = spec(name).model_copy(update={"priority": priority})
        ids[store.enqueue(job, tenant=tenant)[0]] = name
        if index == 0 and aged_s:
            time.sleep(aged_s)
    claimed = []
    while (lease := store.claim("driver")) is not None:  # each stays running
        claimed.append(ids[lease.job_id])
    assert "".join(claimed) == order
