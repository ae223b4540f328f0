"""The queue through the gateway: idempotent retries, cancel, backpressure, health."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.helpers.stack import MAX_QUEUED, TUNEFLEET, Stack

pytestmark = pytest.mark.e2e

TRIVIAL = {
    "priority": "low",
    "dataset": {"builtin": "iris"},
    "search_space": {"epochs": 1, "hidden_units": 4},
}
# Minutes of work for the one driver: jobs behind it wait in the queue.
LONG = {
    "dataset": {"builtin": "digits"},
    "search_space": {"epochs": 200, "hidden_units": 64, "batch_size": 8},
}


def cancel_all(stack: Stack, ids: set[str]) -> None:
    for job_id in ids:
        answer = stack.http.delete(f"/jobs/{job_id}")
        assert answer.status_code in (202, 409), answer.text


def test_concurrent_retried_submissions_make_one_job_each(stack: Stack) -> None:
    before = {job["id"] for job in stack.http.get("/jobs", params={"limit": 1000}).json()}

    def submit_twice(index: int) -> tuple[str, str]:
        with httpx.Client(base_url=stack.url, timeout=60) as client:
            headers = {"Idempotency-Key": f"burst-{index}"}
            first = client.post("/jobs", json=TRIVIAL, headers=headers)
            retry = client.post("/jobs", json=TRIVIAL, headers=headers)
        assert first.status_code == retry.status_code == 202, (first.text, retry.text)
        return first.json()["id"], retry.json()["id"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        pairs = list(pool.map(submit_twice, range(200)))
    assert all(first == retry for first, retry in pairs)
    after = {job["id"] for job in stack.http.get("/jobs", params={"limit": 1000}).json()}
    created = after - before
    assert created == {first for first, _ in pairs} and len(created) == 200
    cancel_all(stack, created)


def test_cancel_answers_by_state(stack: Stack) -> None:
    job_id = stack.http.post("/jobs", json=LONG).json()["id"]
    answer = stack.http.delete(f"/jobs/{job_id}")
    assert answer.status_code == 202
    assert answer.json()["state"] in ("cancelled", "cancelling")
    final = stack.wait_for(job_id, timeout_s=60)
    assert final["state"] == "cancelled"
    again = stack.http.delete(f"/jobs/{job_id}")
    assert again.status_code == 409 and "already ended" in again.json()["detail"]
    assert stack.http.delete(f"/jobs/{'e' * 32}").status_code == 404


def test_full_queue_answers_429_with_retry_after(stack: Stack) -> None:
    # A trivial job ends in a fraction of a second; behind a long one, they queue up.
    busy = stack.http.post("/jobs", json={**LONG, "priority": "high"}).json()["id"]
    submitted: set[str] = {busy}
    refused: httpx.Response | None = None
    for _ in range(MAX_QUEUED + 20):
        answer = stack.http.post("/jobs", json=TRIVIAL)
        if answer.status_code == 429:
            refused = answer
            break
        assert answer.status_code == 202, answer.text
        submitted.add(answer.json()["id"])
    try:
        assert refused is not None, "the queue never filled"
        assert int(refused.headers["Retry-After"]) > 0
        assert "submit again later" in refused.json()["detail"]
        assert stack.http.get("/healthz").json()["queued_jobs"] >= MAX_QUEUED - 1
    finally:
        cancel_all(stack, submitted)
    assert stack.http.post("/jobs", json={**TRIVIAL, "name": "after"}).status_code == 202


def test_health_shows_drivers_and_queues(stack: Stack) -> None:
    health: dict[str, Any] = stack.http.get("/healthz").json()
    assert len(health["drivers"]) == 1
    assert set(health["queued_by_priority"]) == {"high", "normal", "low"}
    done = subprocess.run(
        [str(TUNEFLEET), "check"], env=stack.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "healthy: 1 driver" in done.stdout
