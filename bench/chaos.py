"""Faults injected while jobs run: are any lost, or run twice?

usage: python -m bench.chaos [jobs] [seconds_between_faults]
Starts a redis-server and a local Ray in a temp folder, two drivers
(`python -m services.driver`, lease 3 s), and queues small packed jobs of two tenants.
Until every job has ended, it injects a fault every few seconds, in turn: SIGKILL of a
driver (a new one starts), SIGSTOP of a driver past its lease (SIGCONT 2 leases later),
SIGTERM of a driver (a new one starts), kill -9 of the redis-server (started again on
its files a second later). Prints one JSON line: faults by kind, jobs accepted,
succeeded, failed and lost, models registered, attempts spent, drivers that stopped
because their claim had ended under them, jobs handed back, and seconds taken.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import IO

import ray

from bench.common import emit
from cluster.redis_server import RedisServer
from shared.jobs import JobStore
from shared.redis_client import connect
from shared.registry import ModelRegistry
from shared.spec import JobSpec

LEASE_S = 3.0
DATASETS = ("iris", "wine", "digits")


class Drivers:
    """Driver processes, each logging to its own file."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: list[subprocess.Popen[bytes]] = []
        self.ended: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []

    def start(self) -> None:
        log = open(self.logs / f"driver-{len(self._files)}.log", "wb")  # noqa: SIM115
        self._files.append(log)
        self.running.append(
            subprocess.Popen(
                [sys.executable, "-m", "services.driver"], env=self.env, stdout=log, stderr=log
            )
        )

    def replace(self, index: int, how: signal.Signals) -> None:
        process = self.running.pop(index)
        process.send_signal(how)
        process.wait(60)
        self.ended.append(process)
        self.start()

    def stop_all(self) -> None:
        for process in self.running:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        for process in self.running:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._files:
            log.close()

    def log_count(self, text: str) -> int:
        return sum(path.read_text().count(text) for path in self.logs.glob("driver-*.log"))


def spec(index: int) -> JobSpec:
    return JobSpec.model_validate(
        {
            "dataset": {"builtin": DATASETS[index % len(DATASETS)]},
            "search_space": {
                "lr": {"grid": [0.005, 0.01]},
                "hidden_units": 16,
                "batch_size": 16,
                "epochs": 15,
            },
        }
    )


def main(job_count: int = 12, fault_every_s: float = 6.0) -> None:
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        server = RedisServer(home / "redis")
        server.start()
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        env = {
            **os.environ,
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
            "TUNEFLEET_REDIS_URL": server.url,
            "TUNEFLEET_HOME": str(home),
            "TUNEFLEET_LEASE_S": str(LEASE_S),
            "TUNEFLEET_DRIVER_POLL_S": "0.2",
        }
        drivers = Drivers(env, home)
        client = connect(server.url, patience_s=60)
        store = JobStore(client)
        try:
            accepted = [
                store.enqueue(spec(i), tenant=("alpha", "beta")[i % 2])[0] for i in range(job_count)
            ]
            for _ in range(2):
                drivers.start()
            started = time.monotonic()
            faults = Counter[str]()
            kinds = itertools.cycle(("sigkill", "sigstop", "sigterm", "redis_kill"))
            while not all(store.get(j).state.is_terminal() for j in accepted):
                if time.monotonic() - started > 1800:
                    break
                time.sleep(fault_every_s)
                kind = next(kinds)
                faults[kind] += 1
                if kind == "sigkill":
                    drivers.replace(0, signal.SIGKILL)
                elif kind == "sigterm":
                    drivers.replace(1, signal.SIGTERM)
                elif kind == "sigstop":
                    paused = drivers.running[0]
                    paused.send_signal(signal.SIGSTOP)
                    time.sleep(2 * LEASE_S)
                    paused.send_signal(signal.SIGCONT)
                else:
                    server.kill()
                    time.sleep(1)
                    server.start()
            took_s = time.monotonic() - started
            jobs = [store.get(j) for j in accepted]
            models = {m.job_id for m in ModelRegistry(client).recent(limit=10_000)}
            states = Counter(job.state.value for job in jobs)
            emit(
                {
                    "bench": "chaos",
                    "faults": dict(faults),
                    "jobs_accepted": len(accepted),
                    "jobs_succeeded": states["succeeded"],
                    "jobs_failed": states["failed"],
                    "jobs_lost": len(accepted)
                    - sum(states.values())
                    + sum(n for s, n in states.items() if s in ("queued", "running")),
                    "models_registered": len(models & set(accepted)),
                    "attempts": sum(job.attempts for job in jobs),
                    # A driver whose claim ended under it (paused, cut off) stopped there.
                    "stale_drivers_stopped": drivers.log_count("leaving it to the driver"),
                    "handed_back": drivers.log_count("handed back to the queue (queued)"),
                    "errors": sorted({job.error for job in jobs if job.error}),
                    "seconds": round(took_s, 1),
                }
            )
        finally:
            drivers.stop_all()
            ray.shutdown()
            server.stop()


if __name__ == "__main__":
    main(*(float(a) if "." in a else int(a) for a in sys.argv[1:]))  # type: ignore[arg-type]
