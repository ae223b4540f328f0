"""`tunefleet up` started as a user starts it, in a folder of its own on free ports, and
stopped as a terminal's Ctrl-C stops it: what the tests and the benchmarks run against.

    with LaunchedStack(Path("/tmp/home"), TUNEFLEET_MAX_INSTANCES="1000") as stack:
        httpx.get(f"{stack.url}/healthz")
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from cluster.processes import alive, descendants
from cluster.redis_server import free_port

TUNEFLEET = Path(sys.executable).parent / "tunefleet"
# A stack already set up elsewhere in the environment is not this one's.
_NOT_INHERITED = ("TUNEFLEET_REDIS_URL", "RAY_ADDRESS")


class LaunchedStack:
    """`tunefleet up` with TUNEFLEET_HOME=``home``, its HTTP port free, and ``env`` on top.

    ``wait_for_drivers``: start() returns once a driver is live (jobs start at once),
    not only once /healthz answers.
    """

    def __init__(self, home: Path, *, wait_for_drivers: bool = False, **env: str) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
        self.env.update(
            TUNEFLEET_HOME=str(home),
            TUNEFLEET_HTTP_PORT=str(self.port),
            TUNEFLEET_URL=self.url,
            **env,
        )
        self.log_path = home / "stack.log"
        self.wait_for_drivers = wait_for_drivers
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> LaunchedStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 180) -> None:
        with open(self.log_path, "wb") as log:
            # A session of its own: stop() signals the whole group, as a terminal does.
            self.process = subprocess.Popen(
                [str(TUNEFLEET), "up"], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tunefleet up exited:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"tunefleet up did not answer in {timeout_s} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            answer = httpx.get(f"{self.url}/healthz", timeout=5)
            return answer.status_code == 200 and (
                not self.wait_for_drivers or answer.json()["live_drivers"] > 0
            )
        except (httpx.HTTPError, ValueError, KeyError):
            return False

    def stop(self, hang_up_after_s: float | None = None) -> list[int]:
        """Ctrl-C the stack as a terminal does, to its whole process group (redis-server
        once died of it before the drivers had stopped); return the ids of its processes
        still alive afterwards, which are then killed. ``hang_up_after_s``: then, that
        long after, hang up as a terminal closed in the middle of the stop does."""
        if self.process is None:
            return []
        processes = descendants(self.process.pid)
        os.killpg(self.process.pid, signal.SIGINT)
        if hang_up_after_s is not None:
            time.sleep(hang_up_after_s)
            os.killpg(self.process.pid, signal.SIGHUP)
        try:
            self.process.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(p) for p in processes):
            time.sleep(0.5)
        left = [p for p in processes if alive(p)]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        return left

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]
