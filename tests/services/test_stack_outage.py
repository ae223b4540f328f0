"""`kill -9` of the embedded redis-server under a running stack: it comes back on its
append-only files, the API says 503 (never 500) meanwhile, and no accepted job is lost."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers.stack import Stack

pytestmark = pytest.mark.slow

RUNNING = {
    "dataset": {"builtin": "digits"},
    "search_space": {
        "lr": {"grid": [0.005, 0.01]},
        "hidden_units": 32,
        "batch_size": 8,
        "epochs": 12,
    },
}
WAITING = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 3}}


def embedded_redis_pid(home: Path) -> int:
    """The redis-server that `tunefleet up` started (its URL is in ``home``/redis/url).
    Redis names its process "redis-server HOST:PORT"."""
    port = (home / "redis" / "url").read_text().rsplit(":", 1)[1].split("/")[0]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if title.split(" ")[0].endswith("redis-server") and f":{port}" in title:
            return int(entry.name)
    raise AssertionError(f"no redis-server on port {port}")


def test_killed_redis_comes_back_and_no_accepted_job_is_lost(stack: Stack) -> None:
    running = stack.http.post("/jobs", json=RUNNING).json()["id"]
    waiting = stack.http.post("/jobs", json=WAITING).json()["id"]
    deadline = time.monotonic() + 180
    while not any(t["iterations"] for t in stack.http.get(f"/jobs/{running}/trials").json()):
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.5)

    os.kill(embedded_redis_pid(stack.home), signal.SIGKILL)
    killed_at = time.monotonic()
    answers: list[httpx.Response] = []
    while True:
        # Submitting goes on meanwhile: each answer is 202 (then the job must run) or
        # 503 with a Retry-After, never 500.
        answers.append(stack.http.post("/jobs", json=WAITING))
        health = stack.http.get("/healthz")
        answers.append(health)
        if health.status_code == 200:
            break
        assert time.monotonic() - killed_at < 30, stack.log_tail()
        time.sleep(0.2)
    assert time.monotonic() - killed_at < 30
    assert {a.status_code for a in answers} <= {200, 202, 503}, [a.text for a in answers]
    unavailable = [a for a in answers if a.status_code == 503]
    assert all(int(a.headers["Retry-After"]) > 0 for a in unavailable)
    assert all("Redis" in a.json()["detail"] for a in unavailable)
    accepted = [a.json()["id"] for a in answers if a.status_code == 202]

    for job_id in (running, waiting, *accepted):
        job = stack.wait_for(job_id, timeout_s=300)
        assert job["state"] == "succeeded", job
    assert stack.http.get(f"/jobs/{running}").json()["attempts"] == 1
    assert "redis-server is down" in stack.log_tail(200_000)
