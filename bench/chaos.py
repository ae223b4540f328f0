"""Faults injected while jobs run: are any lost, or run twice?

usage: python -m bench.chaos [jobs] [seconds_between_faults]
Starts a redis-server and a local Ray in a temp folder, two drivers
(`python -m services.driver`, lease 3 s), and queues small packed jobs of two tenants.
Until every job has ended, it injects a fault every few seconds, in turn:

- sigkill: SIGKILL of a driver (a new one starts);
- sigstop: SIGSTOP of a driver past its lease (SIGCONT 2 leases later);
- sigterm: SIGTERM of a driver (a new one starts);
- redis_kill: kill -9 of the redis-server (started again on its files a second later);
- worker_kill: kill -9 of the Ray worker running a pack's epoch, mid-epoch;
- redis_stop: SIGSTOP of the redis-server for 20 s (a network partition), then SIGCONT;
- state_write_full: a file-size limit (RLIMIT_FSIZE, with prlimit) on the Ray workers
  running packs' epochs for 3 s, so that saving a pack's state fails (EFBIG);
- upload_full: a dataset upload to a gateway whose process has a file-size limit (it
  must answer 507), then the same upload without it (it must answer 201).

Prints one JSON line: faults by kind, jobs accepted, succeeded, failed, lost and run
twice (a trial whose result.json holds an epoch twice), models registered, attempts
spent, drivers that stopped because their claim had ended under them, jobs handed back,
the slowest recovery (seconds from a fault to the next epoch any job recorded), the
uploads' answers, and seconds taken.
"""

from __future__ import annotations

import itertools
import json
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


# A gateway's upload in a process of its own, under a file-size limit if one is given;
# prints the answer's status.
UPLOAD = """
import resource, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from fastapi.testclient import TestClient
from services.gateway.app import create_app
from shared.settings import Settings

home, redis_url, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = TestClient(create_app(Settings(redis_url=redis_url, home=home)), base_url="http://127.0.0.1")
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
table = b"a,b,target\\n" + b"".join(b"%d,%d,%d\\n" % (i, i % 7, i % 2) for i in range(20000))
print(client.post("/datasets", files={"file": ("t.csv", table, "text/csv")}).status_code)
"""


def epoch_workers(wait_s: float = 5.0) -> list[int]:
    """Ray workers running a pack's epoch (their process title names the task), the
    first seen within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        found = subprocess.run(["pgrep", "-f", "^ray::train_epoch"], capture_output=True, text=True)
        if found.stdout.split() or time.monotonic() > deadline:
            return [int(pid) for pid in found.stdout.split()]
        time.sleep(0.05)


def upload(home: Path, redis_url: str, limit: int, env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", UPLOAD, str(home), redis_url, str(limit)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    return int(done.stdout.split()[-1]) if done.returncode == 0 else -1


def epochs_recorded(store: JobStore, jobs: list[str]) -> int:
    return sum(t.iterations for job in jobs for t in store.results.trials(job))


def run_twice(experiments: Path, jobs: list[str]) -> list[str]:
    """Jobs with a trial whose result.json holds one epoch more than once."""
    twice = []
    for job in jobs:
        for result in (experiments / job).glob("*/result.json"):
            lines = [json.loads(line) for line in result.read_text().splitlines() if line]
            iterations = [line["training_iteration"] for line in lines]
            if len(iterations) != len(set(iterations)):
                twice.append(job)
                break
    return twice


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


FAULTS = (
    "sigkill", "worker_kill", "sigstop", "state_write_full", "sigterm", "redis_stop",
    "redis_kill", "upload_full",
)  # fmt: skip


def inject(
    kind: str,
    drivers: Drivers,
    server: RedisServer,
    home: Path,
    env: dict[str, str],
    uploads: dict[str, int],
) -> bool:
    """Inject one fault; False when there was nothing to inject it into."""
    if kind == "sigkill":
        drivers.replace(0, signal.SIGKILL)
    elif kind == "sigterm":
        drivers.replace(1, signal.SIGTERM)
    elif kind == "sigstop":
        paused = drivers.running[0]
        paused.send_signal(signal.SIGSTOP)
        time.sleep(2 * LEASE_S)
        paused.send_signal(signal.SIGCONT)
    elif kind == "redis_kill":
        server.kill()
        time.sleep(1)
        server.start()
    elif kind == "redis_stop":
        server.send_signal(signal.SIGSTOP)
        time.sleep(20)
        server.send_signal(signal.SIGCONT)
    elif kind == "worker_kill":
        workers = epoch_workers()
        if not workers:
            return False
        os.kill(workers[0], signal.SIGKILL)
    elif kind == "state_write_full":
        workers = epoch_workers()
        if not workers:
            return False
        for pid in workers:
            subprocess.run(["prlimit", f"--pid={pid}", "--fsize=1000"], check=False)
        time.sleep(3)
        for pid in workers:
            subprocess.run(["prlimit", f"--pid={pid}", "--fsize=unlimited"], check=False)
    else:  # upload_full
        uploads["with_a_file_size_limit"] = upload(home / "gateway", server.url, 20_000, env)
        uploads["without_it"] = upload(home / "gateway", server.url, 0, env)
    return True


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
            recoveries: list[float] = []
            uploads: dict[str, int] = {}
            kinds = itertools.cycle(FAULTS)
            while not all(store.get(j).state.is_terminal() for j in accepted):
                if time.monotonic() - started > 1800:
                    break
                time.sleep(fault_every_s)
                kind = next(kinds)
                before = epochs_recorded(store, accepted)
                faulted_at = time.monotonic()
                if not inject(kind, drivers, server, home, env, uploads):
                    continue
                faults[kind] += 1
                # Recovered once any job records an epoch again (or all have ended).
                while epochs_recorded(store, accepted) <= before:
                    if all(store.get(j).state.is_terminal() for j in accepted):
                        break
                    time.sleep(0.2)
                recoveries.append(time.monotonic() - faulted_at)
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
                    "jobs_run_twice": len(run_twice(home / "storage" / "experiments", accepted)),
                    "slowest_recovery_s": round(max(recoveries, default=0.0), 1),
                    "uploads": uploads,
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
