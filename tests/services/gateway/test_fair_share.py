"""Tenants sharing one queue, over HTTP (the gateway in process, no Serve): turns within a
priority, who may jump the queue, and the least a trial may ask for."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from shared.jobs import JobStore

SPEC = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}}


def submit(client: TestClient, **extra: object) -> str:
    answer = client.post("/jobs", json={**SPEC, **extra})
    assert answer.status_code == 202, answer.text
    return str(answer.json()["id"])


def test_a_tenant_that_queued_many_jobs_does_not_starve_another(
    clients: dict[str, TestClient], redis_client: redis.Redis
) -> None:
    alpha = [submit(clients["alpha"]) for _ in range(5)]
    beta = [submit(clients["beta"]) for _ in range(2)]
    drivers = JobStore(redis_client)
    order = []
    while (lease := drivers.claim("driver")) is not None:
        order.append(lease.job_id)
    # Turns: beta's first job runs second, not sixth; every accepted job runs once.
    assert order == [alpha[0], beta[0], alpha[1], beta[1], *alpha[2:]]
    states = {clients["alpha"].get(f"/jobs/{i}").json()["state"] for i in alpha}
    assert states == {"running"}


def test_high_priority_only_for_the_tenants_an_operator_allows(
    clients: dict[str, TestClient],
) -> None:
    refused = clients["alpha"].post("/jobs", json={**SPEC, "priority": "high"})
    assert refused.status_code == 422
    assert "TUNEFLEET_HIGH_PRIORITY_TENANTS" in refused.json()["detail"]
    assert clients["alpha"].get("/jobs").json() == []  # nothing was queued
    submit(clients["ops"], priority="high")
    submit(clients["alpha"], priority="low")


def test_trials_may_not_ask_for_less_than_the_floor(clients: dict[str, TestClient]) -> None:
    tiny_cpu = clients["beta"].post("/jobs", json={**SPEC, "resources": {"cpu": 0.01}})
    assert tiny_cpu.status_code == 422
    assert "at least 0.5" in tiny_cpu.json()["detail"]
    tiny_gpu = clients["beta"].post("/jobs", json={**SPEC, "resources": {"cpu": 1, "gpu": 0.01}})
    assert tiny_gpu.status_code == 422
    assert "TUNEFLEET_MIN_TRIAL_GPU" in tiny_gpu.json()["detail"]
    submit(clients["beta"], resources={"cpu": 0.5})
