"""PATCH /jobs/{id} over HTTP (the gateway in process, no Serve): what a queued or running
job's owner may change, the queue it moves a job in, and the refusals that say what to
fix. A running job's driver following an edit: test_driver."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from shared.jobs import JobStore
from shared.spec import JobEdit, JobSpec

GRID = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1, "lr": {"grid": [0.1, 0.2]}}}
RANDOM = {
    "dataset": {"builtin": "iris"},
    "search_space": {"epochs": 1, "lr": {"loguniform": [0.001, 0.1]}},
    "search": {"num_samples": 4},
    "time_budget_s": 60,
}


def submit(client: TestClient, spec: dict[str, Any]) -> str:
    answer = client.post("/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_a_queued_job_takes_new_limits_and_moves_to_another_priority(
    clients: dict[str, TestClient], redis_client: redis.Redis
) -> None:
    ops = clients["ops"]
    first, second = submit(ops, RANDOM), submit(ops, RANDOM)
    edited = ops.patch(
        f"/jobs/{second}",
        json={"priority": "high", "num_samples": 10, "max_concurrent_trials": 3,
              "time_budget_s": 90},
    )  # fmt: skip
    assert edited.status_code == 200, edited.text
    view = edited.json()
    assert view["priority"] == "high" and view["trials_total"] == 10
    assert view["spec"]["search"]["num_samples"] == 10
    assert view["spec"]["max_concurrent_trials"] == 3 and view["spec"]["time_budget_s"] == 90
    # The edited job now runs first: it is the only high one.
    drivers = JobStore(redis_client)
    claimed = [lease.job_id for lease in iter(lambda: drivers.claim("driver"), None)]
    assert claimed == [second, first]
    # Running, its concurrency, budget and samples can still change (its driver follows).
    assert ops.patch(f"/jobs/{second}", json={"max_concurrent_trials": 1}).status_code == 200
    raised = ops.patch(f"/jobs/{second}", json={"num_samples": 20})
    assert raised.status_code == 200 and raised.json()["trials_total"] == 20
    assert drivers.edit_count(second) == 3


def test_an_unpacked_random_search_takes_more_samples_only_while_queued(
    clients: dict[str, TestClient], redis_client: redis.Redis
) -> None:
    alpha = clients["alpha"]
    job_id = submit(alpha, {**RANDOM, "packing": False})
    assert JobStore(redis_client).claim("driver") is not None
    late = alpha.patch(f"/jobs/{job_id}", json={"num_samples": 20})
    assert late.status_code == 409 and "runs unpacked" in late.json()["detail"]
    assert alpha.get(f"/jobs/{job_id}").json()["trials_total"] == 4


@pytest.mark.parametrize(
    ("spec", "edit", "says"),
    [
        (RANDOM, {}, "at least one of"),
        (RANDOM, {"priority": None}, "cannot be null"),
        (RANDOM, {"time_budget_s": 30}, "can only be extended"),
        (RANDOM, {"num_samples": 2}, "can only be raised"),
        (RANDOM, {"num_samples": 500}, "at most 50"),
        (GRID, {"num_samples": 3}, "a grid search's trials are its points"),
        (RANDOM, {"priority": "high"}, "tenant alpha may not submit"),
        (RANDOM, {"max_concurrent_trials": 0}, "greater than or equal to 1"),
        (RANDOM, {"epochs": 3}, "Extra inputs are not permitted"),
        (RANDOM, {"time_budget_s": True}, "not true or false"),
    ],
)
def test_edits_that_cannot_apply_say_what_to_fix(
    clients: dict[str, TestClient], spec: dict[str, Any], edit: dict[str, Any], says: str
) -> None:
    alpha = clients["alpha"]
    job_id = submit(alpha, spec)
    before = alpha.get(f"/jobs/{job_id}").json()
    answer = alpha.patch(f"/jobs/{job_id}", json=edit)
    assert answer.status_code == 422 and says in answer.text, answer.text
    assert alpha.get(f"/jobs/{job_id}").json() == before  # nothing refused was written


def test_an_ended_job_is_409_and_another_tenants_is_not_found(
    clients: dict[str, TestClient],
) -> None:
    alpha, beta = clients["alpha"], clients["beta"]
    job_id = submit(alpha, RANDOM)
    assert beta.patch(f"/jobs/{job_id}", json={"max_concurrent_trials": 2}).status_code == 404
    assert alpha.delete(f"/jobs/{job_id}").json()["state"] == "cancelled"
    ended = alpha.patch(f"/jobs/{job_id}", json={"max_concurrent_trials": 2})
    assert ended.status_code == 409 and "has already been cancelled" in ended.json()["detail"]
    assert alpha.patch("/jobs/" + "0" * 32, json={"priority": "low"}).status_code == 404


def test_edits_that_meet_are_each_applied_and_none_is_lost(
    clients: dict[str, TestClient], redis_client: redis.Redis
) -> None:
    alpha = clients["alpha"]
    job_id = submit(alpha, RANDOM)
    store = JobStore(redis_client)
    read = store.get(job_id)
    assert alpha.patch(f"/jobs/{job_id}", json={"max_concurrent_trials": 2}).status_code == 200
    # An edit made from the spec as it was before that one is refused, not written over it.
    assert isinstance(read.spec, JobSpec)
    stale = JobEdit(time_budget_s=120).applied_to(read.spec)
    assert store.edit(job_id, stale, None, read.edits) is None
    # Through the route, the edit is applied to the spec as it is now: both stay.
    assert alpha.patch(f"/jobs/{job_id}", json={"time_budget_s": 120}).status_code == 200
    spec = alpha.get(f"/jobs/{job_id}").json()["spec"]
    assert spec["max_concurrent_trials"] == 2 and spec["time_budget_s"] == 120


def test_a_spec_may_continue_only_its_tenants_succeeded_job(
    clients: dict[str, TestClient],
) -> None:
    alpha, beta = clients["alpha"], clients["beta"]
    queued = submit(alpha, RANDOM)
    spec = {**RANDOM, "continue_from": {"job": queued, "trials": ["x_00000"], "epochs": 5}}
    assert beta.post("/jobs", json=spec).status_code == 404  # another tenant's job
    refused = alpha.post("/jobs", json=spec)
    assert refused.status_code == 422 and "not a succeeded tuning job" in refused.text
    early = alpha.post(f"/jobs/{queued}/continue", json={"epochs": 5})
    assert early.status_code == 409 and "only a succeeded tuning job" in early.text
