"""The queue's speed: submit-to-start latency and gateway submissions per second.

usage: python -m bench.queue_latency [submissions] [latency_samples]
Runs `tunefleet up` in a temp folder. Submit-to-start: on an idle stack, from the 202
to the first trial reported running, and to its first epoch's result (polled every
20 ms), median and max of several jobs run one after another. Submissions per second:
16 concurrent clients posting a validated spec until each got its 202 (the jobs are then cancelled).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.common import LocalStack, emit

SPEC = {
    "dataset": {"builtin": "iris"},
    "search_space": {"epochs": 3, "hidden_units": 8},
}
CLIENTS = 16


def submit_to_start(client: httpx.Client) -> tuple[float, float]:
    """Seconds from the 202 to the first trial running, and to its first epoch's result."""
    accepted = client.post("/jobs", json=SPEC)
    started = time.perf_counter()
    job_id = accepted.json()["id"]
    running_s = None
    while True:
        trials = client.get(f"/jobs/{job_id}/trials").json()
        if running_s is None and any(t["state"] == "RUNNING" or t["iterations"] for t in trials):
            running_s = time.perf_counter() - started
        if any(t["iterations"] for t in trials):
            break
        time.sleep(0.02)
    result_s = time.perf_counter() - started
    while client.get(f"/jobs/{job_id}").json()["state"] not in ("succeeded", "failed"):
        time.sleep(0.2)
    return running_s or result_s, result_s


def main() -> None:
    submissions = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    samples = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as folder, LocalStack(Path(folder)) as stack:
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            latencies = [submit_to_start(client) for _ in range(samples)]
        for name, seconds in (
            ("submit_to_start", [running for running, _ in latencies]),
            ("submit_to_first_result", [result for _, result in latencies]),
        ):
            emit(
                {
                    "bench": name,
                    "samples": samples,
                    "median_s": round(statistics.median(seconds), 3),
                    "max_s": round(max(seconds), 3),
                }
            )

        low = {**SPEC, "priority": "low"}

        clients = threading.local()

        def post(_: int) -> str:
            # One connection per client thread, as a real client keeps it alive.
            if not hasattr(clients, "http"):
                clients.http = httpx.Client(base_url=stack.url, timeout=120)
            answer = clients.http.post("/jobs", json=low)
            answer.raise_for_status()
            return str(answer.json()["id"])

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            ids = list(pool.map(post, range(submissions)))
        elapsed = time.perf_counter() - started
        emit(
            {
                "bench": "submissions_per_second",
                "clients": CLIENTS,
                "submissions": submissions,
                "per_second": round(submissions / elapsed, 1),
            }
        )
        with httpx.Client(base_url=stack.url, timeout=120) as client:
            for job_id in ids:
                client.delete(f"/jobs/{job_id}")


if __name__ == "__main__":
    main()
