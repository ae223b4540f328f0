"""The processes bench.control_plane starts: the gateway, the drivers and the readers.

usage: python -m bench.control_plane_load gateway|driver|sse|poll CONFIG_JSON
Each role runs until SIGTERM (or its hard deadline, whichever comes first) and writes
what it saw to the JSON file its config names; bench.control_plane joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import math
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import redis

from shared.errors import LeaseLostError
from shared.jobs import JobStore
from shared.lease import Lease
from shared.settings import QueuePolicy
from shared.spec import JobSpec

if TYPE_CHECKING:
    from services.driver.progress import TrialProgress

TERMINAL = (b'"state":"succeeded"', b'"state":"failed"', b'"state":"cancelled"')


class Stop:
    """Set by SIGTERM or by the hard deadline: every loop of a role checks it."""

    def __init__(self, hard_deadline: float) -> None:
        self.event = threading.Event()
        self.hard_deadline = hard_deadline
        signal.signal(signal.SIGTERM, lambda *_: self.event.set())

    def is_set(self) -> bool:
        return self.event.is_set() or time.time() >= self.hard_deadline


def write(path: str, data: Any) -> None:
    with open(path, "w") as out:
        json.dump(data, out)


def ready(config: dict[str, Any]) -> None:
    """Tell bench.control_plane that this process is under way (its window waits)."""
    Path(config["out"] + ".ready").touch()


# -- the gateway -------------------------------------------------------------------------


def gateway(config: dict[str, Any]) -> None:
    """The gateway's FastAPI app (as each Serve replica builds it) under uvicorn."""
    import uvicorn

    from services.gateway.app import create_app
    from shared.settings import Settings

    app = create_app(Settings())
    uvicorn.run(app, host="127.0.0.1", port=config["port"], log_level="warning", access_log=False)


# -- the drivers -------------------------------------------------------------------------


@dataclass
class _Job:
    lease: Lease
    progress: TrialProgress
    configs: dict[str, dict[str, Any]]
    ceilings: dict[str, float]
    epochs: dict[str, int]
    cancelled: Callable[[], bool]  # the driver's check for a cancel


def driver(config: dict[str, Any]) -> None:
    """One driver process holding several jobs, each trial reporting an epoch every
    ``interval_s`` (with jitter) through TrialProgress, as the packed engine feeds it."""
    # Here rather than at the top: the readers' processes need not import Ray Tune.
    # Before the first claim: on a busy machine the imports take longer than a lease.
    from services.driver.driver import CancelCheck  # noqa: F401
    from services.driver.progress import TrialProgress
    from services.driver.search import configurations  # noqa: F401

    stop = Stop(config["hard_deadline"])
    store = JobStore(
        redis.Redis.from_url(config["redis_url"], decode_responses=True),
        QueuePolicy.default(lease_s=config["lease_s"]),
    )
    driver_id = f"bench-driver-{config['index']}"
    store.drivers.heartbeat(driver_id)
    held = Held()
    # The driver's own thread, from the first claim on: starting a job takes a while.
    beat = threading.Thread(target=_heartbeats, args=(store, driver_id, held, config), daemon=True)
    beat.start()
    jobs: list[_Job] = []
    while len(jobs) < config["jobs"] and not stop.is_set():
        lease = store.claim(driver_id)
        if lease is None:
            break
        held.add(lease)
        jobs.append(_start_job(store, lease, config["pack_size"], TrialProgress))
    ready(config)
    reports, call_s = _report_until_stopped(store, jobs, stop, config)
    lost = sum(job.lease.lost.is_set() for job in jobs)
    for job in jobs:  # the time budget ran out: every trial ends where it is, the job too
        if job.lease.lost.is_set():
            continue
        for trial_id, trial_config in job.configs.items():
            job.progress.end(trial_id, trial_config, _result(job, trial_id))
        assert job.progress.best is not None
        with held.lock:  # a renewal after the end would find the claim gone
            store.succeed(job.lease, job.progress.best, {})
            held.leases.remove(job.lease)
    held.stopped.set()
    beat.join()
    store.drivers.forget(driver_id)
    write(config["out"], {"reports": reports, "call_s": call_s, "leases_lost": lost})


@dataclass
class Held:
    """The leases a driver renews, from their claim to their job's end."""

    leases: list[Lease] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopped: threading.Event = field(default_factory=threading.Event)

    def add(self, lease: Lease) -> None:
        with self.lock:
            self.leases.append(lease)


def _start_job(
    store: JobStore, lease: Lease, pack_size: int, progress_of: type[TrialProgress]
) -> _Job:
    from services.driver.driver import CancelCheck
    from services.driver.search import configurations

    spec = store.get(lease.job_id).spec
    assert isinstance(spec, JobSpec), "the bench submits tuning jobs only"
    metric, mode = spec.objective("classification")
    store.record_objective(lease, "classification", metric, mode)
    progress = progress_of(store, lease, metric, mode)
    drawn = configurations(spec, 0)
    configs = {f"{lease.job_id[:8]}_{index:05d}": c for index, c in enumerate(drawn)}
    store.record_engine(lease, f"packed: {math.ceil(len(configs) / pack_size)} packs")
    rng = random.Random(lease.job_id)
    ceilings = {trial_id: rng.uniform(0.7, 0.99) for trial_id in configs}
    cancelled = CancelCheck(store, lease.job_id)
    job = _Job(lease, progress, configs, ceilings, dict.fromkeys(configs, 0), cancelled)
    for trial_id, trial_config in configs.items():
        progress.start(trial_id, trial_config, {})
    return job


def _result(job: _Job, trial_id: str) -> dict[str, Any]:
    """What a pack task answers for a member after ``job.epochs`` epochs, as
    PackedRun._result shapes it: accuracy climbing towards the trial's ceiling."""
    epoch = job.epochs[trial_id]
    accuracy = job.ceilings[trial_id] * (1 - math.exp(-(epoch + 1) / 15))
    return {
        "training_accuracy": accuracy,
        "val_accuracy": accuracy - 0.01,
        "training_loss": 1 - accuracy,
        "val_loss": 1.01 - accuracy,
        "device": "cpu",
        "node_id": "f" * 56,
        "training_iteration": epoch,
        "time_total_s": 0.5 * epoch,
    }


def _report_until_stopped(
    store: JobStore, jobs: list[_Job], stop: Stop, config: dict[str, Any]
) -> tuple[list[list[Any]], list[float]]:
    """Each pack's epoch ends every interval_s (+-10 %); its members report one after
    another, then the engine's loop asks whether the job should stop. Returns each
    report as [job id, trial id, epoch, time] and the seconds each report call took."""
    interval_s = config["interval_s"]
    rng = random.Random(config["index"])
    due: list[tuple[float, int, int]] = []  # (when, job index, pack index)
    packs: list[list[list[str]]] = []
    now = time.time()
    for job_index, job in enumerate(jobs):
        ids = list(job.configs)
        packs.append(
            [ids[i : i + config["pack_size"]] for i in range(0, len(ids), config["pack_size"])]
        )
        for pack_index in range(len(packs[-1])):
            heapq.heappush(due, (now + rng.uniform(0, interval_s), job_index, pack_index))
    reports: list[list[Any]] = []
    call_s: list[float] = []
    while due and not stop.is_set():
        when, job_index, pack_index = heapq.heappop(due)
        wait_s = when - time.time()
        if wait_s > 0 and stop.event.wait(wait_s):
            break
        job = jobs[job_index]
        if job.lease.lost.is_set():  # its claim ended under it (a renewal came too late)
            continue
        for trial_id in packs[job_index][pack_index]:
            job.epochs[trial_id] += 1
            result = _result(job, trial_id)
            started = time.time()
            with contextlib.suppress(LeaseLostError):
                job.progress.result(trial_id, job.configs[trial_id], result)
                call_s.append(time.time() - started)
                reports.append([job.lease.job_id, trial_id, job.epochs[trial_id], started])
        job.cancelled()  # the engine's should_stop, after every pack's epoch
        heapq.heappush(due, (when + interval_s * rng.uniform(0.9, 1.1), job_index, pack_index))
    return reports, call_s


def _heartbeats(store: JobStore, driver_id: str, held: Held, config: dict[str, Any]) -> None:
    """The driver's heartbeat thread: its health key, its leases, and the reaper."""
    while not held.stopped.wait(config["lease_s"] / 3):
        store.drivers.heartbeat(driver_id)
        with held.lock:
            for lease in held.leases:
                store.renew(lease)
        store.reap()


# -- the readers -------------------------------------------------------------------------


def sse(config: dict[str, Any]) -> None:
    """Event-stream readers spread over the jobs: when each saw which trial's epoch."""
    stop = Stop(config["hard_deadline"])
    seen: list[list[Any]] = []
    first_event_s: list[float] = []
    ended: list[str] = []  # a stream per entry that ended with its job's final state

    async def follow(session: aiohttp.ClientSession, job_id: str) -> None:
        started = time.time()
        waiting_for_first = True
        shown: set[tuple[str, int]] = set()  # a trial's end repeats its last epoch's row
        async with session.get(f"{config['url']}/jobs/{job_id}/events") as response:
            response.raise_for_status()
            kind = b""
            async for line in response.content:
                if line.startswith(b"event: "):
                    kind = line[7:].strip()
                elif line.startswith(b"data: "):
                    now = time.time()
                    if kind == b"trial":
                        row = json.loads(line[6:])
                        key = (row["trial_id"], row["iterations"])
                        if key not in shown:
                            shown.add(key)
                            seen.append([job_id, *key, now])
                    if waiting_for_first:
                        first_event_s.append(now - started)
                        waiting_for_first = False
                        if len(first_event_s) == config["readers"]:
                            ready(config)
                    if kind == b"job" and any(state in line for state in TERMINAL):
                        ended.append(job_id)
                        return

    async def main() -> None:
        jobs = config["jobs"]
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            followers = [follow(session, jobs[i % len(jobs)]) for i in range(config["readers"])]
            following = asyncio.gather(*followers)
            while not following.done():  # streams end with their jobs, or on SIGTERM
                if stop.is_set():
                    following.cancel()
                await asyncio.sleep(0.2)
            with contextlib.suppress(asyncio.CancelledError):
                await following

    asyncio.run(main())
    write(config["out"], {"seen": seen, "first_event_s": first_event_s, "ended": ended})


def poll(config: dict[str, Any]) -> None:
    """Pollers of GET /jobs/{id} and GET /jobs/{id}/trials (and POST /models/{id}/predict
    where a model is given): each route's latencies, and which epochs each GET showed."""
    stop = Stop(config["hard_deadline"])
    seen: list[list[Any]] = []
    latency_s: dict[str, list[float]] = {"GET /jobs/{id}": [], "GET /jobs/{id}/trials": []}

    async def timed(session: aiohttp.ClientSession, route: str, url: str) -> Any:
        started = time.time()
        async with session.get(url) as response:
            response.raise_for_status()
            body = await response.json()
        latency_s[route].append(time.time() - started)
        return body

    async def poller(session: aiohttp.ClientSession, index: int) -> None:
        jobs = config["jobs"]
        shown: dict[tuple[str, str], int] = {}
        next_at = time.time() + config["interval_s"] * index / config["pollers"]
        turn = index
        while not stop.is_set():
            await asyncio.sleep(max(0.0, next_at - time.time()))
            next_at += config["interval_s"]
            job_id = jobs[turn % len(jobs)]
            turn += config["pollers"]
            await timed(session, "GET /jobs/{id}", f"{config['url']}/jobs/{job_id}")
            rows = await timed(
                session, "GET /jobs/{id}/trials", f"{config['url']}/jobs/{job_id}/trials"
            )
            now = time.time()
            for row in rows:
                key = (job_id, row["trial_id"])
                if row["iterations"] > shown.get(key, 0):
                    shown[key] = row["iterations"]
                    seen.append([job_id, row["trial_id"], row["iterations"], now])

    async def main() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            ready(config)
            await asyncio.gather(*(poller(session, i) for i in range(config["pollers"])))

    asyncio.run(main())
    write(config["out"], {"seen": seen, "latency_s": latency_s})


ROLES = {"gateway": gateway, "driver": driver, "sse": sse, "poll": poll}

if __name__ == "__main__":
    ROLES[sys.argv[1]](json.loads(sys.argv[2]))
