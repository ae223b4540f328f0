"""The whole stack as the tests start it: `tunefleet up` the way a user starts it, with
the limits the tests reach, an HTTP client on it, and rows to predict."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sklearn.datasets import load_digits

from cluster.redis_server import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
TUNEFLEET = Path(sys.executable).parent / "tunefleet"
# The stack's limits in tests: small enough to reach in a test.
MAX_QUEUED = 250
MAX_INSTANCES = 100
MAX_TRIALS = 100
MAX_EPOCHS = 200


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` right now."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True
        ).stdout
        children = {int(p) for p in out.split()}
        found |= children
        frontier.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


class Stack:
    """A `tunefleet up` started the way a user starts it, with an HTTP client on it."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            k: v for k, v in os.environ.items() if k not in ("TUNEFLEET_REDIS_URL", "RAY_ADDRESS")
        }
        self.env.update(
            TUNEFLEET_HOME=str(home),
            TUNEFLEET_HTTP_PORT=str(self.port),
            TUNEFLEET_URL=self.url,
            TUNEFLEET_MAX_QUEUED=str(MAX_QUEUED),
            TUNEFLEET_MAX_INSTANCES=str(MAX_INSTANCES),
            TUNEFLEET_MAX_TRIALS=str(MAX_TRIALS),
            TUNEFLEET_MAX_EPOCHS=str(MAX_EPOCHS),
            # One predictor replica: every model it serves is multiplexed on it.
            TUNEFLEET_PREDICTOR_MAX_REPLICAS="1",
        )
        self.log_path = home / "stack.log"
        self.http = httpx.Client(base_url=self.url, timeout=60)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 180) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(TUNEFLEET), "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tunefleet up exited:\n{self.log_tail()}")
            try:
                if self.http.get("/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"tunefleet up did not answer in {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> list[int]:
        """Ctrl-C the stack as a terminal does, to its whole process group (redis-server
        once died of it before the drivers had stopped); return the ids of its processes
        still alive afterwards."""
        assert self.process is not None
        processes = _descendants(self.process.pid)
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in processes):
            time.sleep(0.5)
        left = [p for p in processes if _alive(p)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        self.http.close()
        return left

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

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
