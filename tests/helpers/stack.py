"""The whole stack as the tests start it: `tunefleet up` the way a user starts it, with
the limits the tests reach, an HTTP client on it, and rows to predict."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from sklearn.datasets import load_digits

from cluster.launcher import TUNEFLEET, LaunchedStack

__all__ = ["TUNEFLEET", "Stack", "digits_rows"]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
# The stack's limits in tests: small enough to reach in a test.
MAX_QUEUED = 250
MAX_INSTANCES = 100
MAX_TRIALS = 100
MAX_EPOCHS = 200


class Stack(LaunchedStack):
    """A `tunefleet up` started the way a user starts it (cluster.launcher), with the
    limits the tests reach and an HTTP client on it."""

    def __init__(self, home: Path) -> None:
        super().__init__(
            home,
            TUNEFLEET_MAX_QUEUED=str(MAX_QUEUED),
            TUNEFLEET_MAX_INSTANCES=str(MAX_INSTANCES),
            TUNEFLEET_MAX_TRIALS=str(MAX_TRIALS),
            TUNEFLEET_MAX_EPOCHS=str(MAX_EPOCHS),
            # One predictor replica: every model it serves is multiplexed on it.
            TUNEFLEET_PREDICTOR_MAX_REPLICAS="1",
            # The driver takes jobs at once, warming its workers meanwhile: a first
            # job's speed is bench.seed_grid's to measure, and each of the suite's
            # stacks would wait for its warm-up.
            TUNEFLEET_DRIVER_WARM_WAIT_S="0",
        )
        self.http = httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> list[int]:
        left = super().stop()
        self.http.close()
        return left

    def wait_for(self, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
        """Poll a job until it ends; return its last view."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            job = self.http.get(f"/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} did not end in {timeout_s} s:\n{self.log_tail()}")


def digits_rows(count: int, seed: int = 3) -> list[dict[str, float]]:
    """Rows of the digits dataset as {feature: value} instances."""
    frame = load_digits(as_frame=True).frame.drop(columns=["target"])
    return frame.sample(count, random_state=seed).to_dict(orient="records")
