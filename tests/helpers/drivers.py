"""Drivers as processes on a local Ray, and the job store they work on, for the fault tests."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared.jobs import JobStore
from shared.spec import JobSpec

LEASE_S = 3.0


class Drivers:
    """Driver processes started as an operator would start them."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        # Live at once, as the tests' stacks are, unless ``env`` says otherwise: a driver
        # started while another one's paused workers hold the CPUs would wait its whole
        # warm-up (60 s).
        self.env = {"TUNEFLEET_DRIVER_WARM_WAIT_S": "0", **env}
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"driver-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "services.driver"], env=self.env, stdout=log, stderr=log
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait()


def submit(store: JobStore, spec: dict[str, Any]) -> str:
    job_id, _ = store.enqueue(JobSpec.model_validate(spec))
    return job_id


def wait_until(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2
) -> float:
    """Seconds until ``condition`` held; fails after ``timeout_s``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


def ended(store: JobStore, job_id: str) -> Callable[[], bool]:
    return lambda: store.get(job_id).state.is_terminal()
