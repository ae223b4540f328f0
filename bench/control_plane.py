"""The control plane under the load of a 100-node cluster, on this one machine.

usage: python -m bench.control_plane [--drivers 10] [--jobs 50] [--trials-per-job 32]
           [--report-interval-s 1] [--pack-size 1] [--readers 100] [--pollers 20]
           [--poll-interval-s 1] [--duration-s 60]

No Ray and no training: the load generator plays the drivers. A redis-server in a temp
folder; the gateway's FastAPI app under uvicorn in its own process; the jobs submitted
over HTTP (POST /jobs); driver processes that claim them with JobStore.claim, keep
their leases with the heartbeat thread's calls, and feed every trial's epochs through
TrialProgress as the packed engine does (one pack per trial by default: what a job of
32 trials gets on a cluster with more slots than trials); event-stream readers
(GET /jobs/{id}/events) spread over the jobs; pollers of GET /jobs/{id} and
GET /jobs/{id}/trials. Each kind of client runs in its own processes (bench.
control_plane_load), so that each one's CPU is known.

One JSON line per figure, over the measuring window (after every trial has started):
reports per second achieved against the target; Redis commands per second (INFO
commandstats) and Redis CPU; report-to-visible latency (a trial's report to an event
stream reader or a GET showing that epoch); latency per route; each process's CPU,
and the machine's; and which part ran out first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import emit
from cluster.redis_server import RedisServer, free_port
from shared.jobs import JobStore

REPO = Path(__file__).resolve().parent.parent
LEASE_S = 30.0
WARM_UP_S = 5.0
# Starting ten processes that import Ray Tune on a busy 2-core machine took minutes.
START_UP_S = 300.0
# Past the run's end and this, every process of the bench stops by itself.
GRACE_S = 120.0
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.control_plane", description=__doc__)
    parser.add_argument("--drivers", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--trials-per-job", type=int, default=32)
    parser.add_argument("--report-interval-s", type=float, default=1.0)
    parser.add_argument("--pack-size", type=int, default=1, help="trials per pack")
    parser.add_argument("--readers", type=int, default=100, help="event streams open")
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--poll-interval-s", type=float, default=1.0)
    parser.add_argument("--duration-s", type=float, default=60.0)
    found = parser.parse_args()
    for name in ("drivers", "jobs", "trials_per_job", "pack_size", "readers"):
        if getattr(found, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if found.report_interval_s <= 0 or found.duration_s <= 0 or found.poll_interval_s <= 0:
        parser.error("--report-interval-s, --poll-interval-s and --duration-s must be > 0")
    return found


class Roles:
    """The bench's processes, by role; each logs to its own file."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.started: dict[str, list[subprocess.Popen[bytes]]] = defaultdict(list)

    def start(self, role: str, **config: Any) -> Path:
        """Start one process of ``role``; the path it writes its findings to."""
        name = f"{role}-{len(self.started[role])}"
        out = self.folder / f"{name}.json"
        with open(self.folder / f"{name}.log", "wb") as log:
            self.started[role].append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.control_plane_load", role,
                     json.dumps({**config, "out": str(out)})],
                    cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        return out

    def pids(self) -> dict[str, list[int]]:
        return {role: [p.pid for p in processes] for role, processes in self.started.items()}

    def stop(self, role: str, timeout_s: float) -> None:
        """SIGTERM each process of ``role``, then wait; SIGKILL one that outlives it."""
        for process in self.started[role]:
            if process.poll() is None:
                process.terminate()
        self.wait(role, timeout_s)

    def wait(self, role: str, timeout_s: float, then_stop: bool = False) -> None:
        """Wait for the processes of ``role`` to end; past ``timeout_s``, SIGTERM them
        (``then_stop``: they write what they found) or SIGKILL them."""
        deadline = time.monotonic() + timeout_s
        for process in self.started[role]:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                if then_stop:
                    self.stop(role, 15)
                    return
                process.kill()
                process.wait()

    def stop_all(self) -> None:
        for role in self.started:
            self.stop(role, 15)


@dataclass
class Snapshot:
    """Counters read at one moment: Redis's per command, and CPU seconds."""

    at: float
    commands: dict[str, tuple[int, int]]  # command -> (calls, microseconds)
    redis_cpu_s: float
    cpu_s: dict[int, float]  # pid -> CPU seconds
    # pid -> seconds its threads were ready to run but waited for a core (schedstat):
    # what a process lacks when the machine, not the process, is the limit.
    waited_s: dict[int, float]
    machine_busy_s: float
    machine_all_s: float


def snapshot(client: redis.Redis, pids: list[int]) -> Snapshot:
    stats: dict[str, Any] = client.info("commandstats")
    cpu: dict[str, Any] = client.info("cpu")
    with open("/proc/stat") as proc:
        ticks = [int(t) for t in proc.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return Snapshot(
        at=time.time(),
        commands={
            name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for name, v in stats.items()
        },
        redis_cpu_s=float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        cpu_s={pid: _process_cpu_s(pid) for pid in pids},
        waited_s={pid: _waited_s(pid) for pid in pids},
        machine_busy_s=(sum(ticks) - idle) / TICKS_PER_S,
        machine_all_s=sum(ticks) / TICKS_PER_S,
    )


def _process_cpu_s(pid: int) -> float:
    """User and system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _waited_s(pid: int) -> float:
    """Seconds the threads of a process spent runnable, waiting for a core."""
    waited_ns = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            waited_ns += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return waited_ns / 1e9


def spec(index: int, trials: int) -> dict[str, Any]:
    """A packed job of ``trials`` configurations (a grid of learning rates) that runs
    until the bench ends it."""
    rates = [round(10 ** (-4 + 3 * i / max(1, trials - 1)), 8) for i in range(trials)]
    return {
        "name": f"load-{index}",
        "dataset": {"builtin": "iris"},
        "search_space": {"lr": {"grid": rates}, "epochs": 1000},
    }


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"samples": 0}
    ordered = sorted(seconds)
    p50, p99 = (ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in (0.5, 0.99))
    return {
        "samples": len(ordered),
        "p50_ms": round(1000 * p50, 1),
        "p99_ms": round(1000 * p99, 1),
        "max_ms": round(1000 * ordered[-1], 1),
    }


def main() -> None:
    args = options()
    with tempfile.TemporaryDirectory() as name, RedisServer(Path(name) / "redis") as server:
        folder = Path(name)
        run(args, folder, server)


def run(args: argparse.Namespace, folder: Path, server: RedisServer) -> None:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "TUNEFLEET_REDIS_URL": server.url,
        "TUNEFLEET_HOME": str(folder / "home"),
        "TUNEFLEET_MAX_EVENT_STREAMS_PER_TENANT": str(args.readers + 10),
    }
    roles = Roles(folder, env)
    hard_deadline = time.time() + START_UP_S + WARM_UP_S + args.duration_s + GRACE_S
    try:
        roles.start("gateway", port=port)
        submit_s = _submit(url, args, roles)
        job_ids: list[str] = [job_id for job_id, _ in submit_s]
        per_driver = math.ceil(args.jobs / args.drivers)
        driver_outs = [
            roles.start(
                "driver", index=i, redis_url=server.url, lease_s=LEASE_S, jobs=per_driver,
                pack_size=args.pack_size, interval_s=args.report_interval_s,
                hard_deadline=hard_deadline,
            )
            for i in range(args.drivers)
        ]  # fmt: skip
        store = JobStore(client)
        _wait(lambda: store.running_count() >= args.jobs, "every job claimed", START_UP_S)
        readers = dict(url=url, jobs=job_ids, hard_deadline=hard_deadline)
        sse_out = roles.start("sse", readers=args.readers, **readers)
        poll_out = roles.start(
            "poll", pollers=args.pollers, interval_s=args.poll_interval_s, **readers
        )
        for out in (*driver_outs, sse_out, poll_out):
            ready = Path(f"{out}.ready")
            _wait(ready.exists, f"{out.stem} under way", START_UP_S)
        time.sleep(WARM_UP_S)
        redis_pid = int(client.info("server")["process_id"])
        watched = [redis_pid, *(pid for group in roles.pids().values() for pid in group)]
        before = snapshot(client, watched)
        time.sleep(args.duration_s)
        after = snapshot(client, watched)
        roles.stop("poll", 30)
        roles.stop("driver", 120)  # they end their trials and jobs
        roles.wait("sse", 30, then_stop=True)  # their streams end with the jobs
        states = Counter(store.get(job_id).state.value for job_id in job_ids)
        roles.stop("gateway", 15)
    finally:
        roles.stop_all()
    drivers = [json.loads(out.read_text()) for out in driver_outs]
    found = {
        "reports": [r for d in drivers for r in d["reports"]],
        "call_s": [c for d in drivers for c in d["call_s"]],
        "leases_lost": sum(d["leases_lost"] for d in drivers),
        "job_states": dict(states),
        "sse": json.loads(sse_out.read_text()),
        "poll": json.loads(poll_out.read_text()),
    }
    pids = {"redis": [redis_pid], **roles.pids()}
    report(args, before, after, pids, found, [s for _, s in submit_s], job_ids)


def _submit(url: str, args: argparse.Namespace, roles: Roles) -> list[tuple[str, float]]:
    """POST each job; (id, seconds to the 202) each."""
    with httpx.Client(base_url=url, timeout=30) as http:
        _wait(lambda: _answers(http), "the gateway answering")
        accepted = []
        for index in range(args.jobs):
            started = time.time()
            answer = http.post("/jobs", json=spec(index, args.trials_per_job))
            answer.raise_for_status()
            accepted.append((str(answer.json()["id"]), time.time() - started))
        return accepted


def _answers(http: httpx.Client) -> bool:
    try:
        return http.get("/livez").status_code == 200
    except httpx.HTTPError:
        return False


def _wait(condition: Any, what: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def report(
    args: argparse.Namespace,
    before: Snapshot,
    after: Snapshot,
    pids: dict[str, list[int]],
    found: dict[str, Any],
    submit_s: list[float],
    job_ids: list[str],
) -> None:
    window_s = after.at - before.at
    in_window = {
        (job, trial, epoch): at
        for job, trial, epoch, at in found["reports"]
        if before.at <= at <= after.at
    }
    target = args.jobs * args.trials_per_job / args.report_interval_s
    emit({"bench": "control_plane", "figure": "reports_per_s", "target": round(target),
          "achieved": round(len(in_window) / window_s, 1),
          "ratio": round(len(in_window) / window_s / target, 3), "window_s": round(window_s, 1),
          "leases_lost": found["leases_lost"], "jobs_ended": found["job_states"],
          "report_call": quantiles_ms(found["call_s"])})  # fmt: skip

    calls = {
        name: (after.commands[name][0] - before.commands.get(name, (0, 0))[0],
               after.commands[name][1] - before.commands.get(name, (0, 0))[1])
        for name in after.commands
    }  # fmt: skip
    top = sorted(calls.items(), key=lambda item: -item[1][0])[:8]
    emit({"bench": "control_plane", "figure": "redis",
          "commands_per_s": round(sum(c for c, _ in calls.values()) / window_s),
          "scripts_per_s": round(calls.get("evalsha", (0, 0))[0] / window_s),
          "command_time_share": round(sum(u for _, u in calls.values()) / 1e6 / window_s, 3),
          "cpu_cores": round((after.redis_cpu_s - before.redis_cpu_s) / window_s, 3),
          "top_per_s": {name: round(c / window_s) for name, (c, _) in top}})  # fmt: skip

    for via, seen in (
        ("event stream", found["sse"]["seen"]),
        ("GET /jobs/{id}/trials", found["poll"]["seen"]),
    ):
        delays = [at - in_window[job, trial, epoch] for job, trial, epoch, at in seen
                  if (job, trial, epoch) in in_window]  # fmt: skip
        emit({"bench": "control_plane", "figure": "report_to_visible", "via": via,
              **quantiles_ms(delays)})  # fmt: skip
    readers_of: dict[str, int] = defaultdict(int)
    for index in range(args.readers):
        readers_of[job_ids[index % len(job_ids)]] += 1
    expected = sum(readers_of[job] for job, *_ in in_window)
    shown = {tuple(s[:3]) for s in found["sse"]["seen"]}
    emit({"bench": "control_plane", "figure": "event_stream_delivery",
          "reports_in_window_times_readers": expected,
          "events_received": sum(1 for s in found["sse"]["seen"] if tuple(s[:3]) in in_window),
          "reports_never_streamed": sum(1 for key in in_window if key not in shown),
          "streams_ended_with_their_job": len(found["sse"]["ended"]),
          "first_event": quantiles_ms(found["sse"]["first_event_s"])})  # fmt: skip

    routes = {"POST /jobs": submit_s, **found["poll"]["latency_s"]}
    for route, seconds in routes.items():
        emit({"bench": "control_plane", "figure": "route_latency", "route": route,
              **quantiles_ms(seconds)})  # fmt: skip

    cores = os.cpu_count() or 1
    used = {
        role: [(after.cpu_s[p] - before.cpu_s[p]) / window_s for p in group]
        for role, group in pids.items()
    }
    waited = {
        role: sum(after.waited_s[p] - before.waited_s[p] for p in group) / window_s
        for role, group in pids.items()
    }
    machine = (after.machine_busy_s - before.machine_busy_s) / window_s
    redis_cores = (after.redis_cpu_s - before.redis_cpu_s) / window_s
    ours = sum(sum(v) for v in used.values())
    emit({"bench": "control_plane", "figure": "cpu_cores", "cores": cores,
          **{role: round(sum(v), 3) for role, v in used.items()},
          "busiest_driver": round(max(used.get("driver", [0.0])), 3),
          "machine_busy": round(machine, 3),
          "others_on_machine": round(machine - ours, 3),
          "redis_info_cpu": round(redis_cores, 3)})  # fmt: skip
    emit({"bench": "control_plane", "figure": "waiting_for_a_core",
          **{role: round(v, 3) for role, v in waited.items()}})  # fmt: skip
    # A single-threaded server (Redis, one Python process) saturates at one core; the
    # machine at all of them.
    loads = {
        "redis": redis_cores,
        "gateway (one process)": sum(used.get("gateway", [0.0])),
        "a driver process": max(used.get("driver", [0.0])),
        "event-stream readers (one process)": sum(used.get("sse", [0.0])),
        "pollers (one process)": sum(used.get("poll", [0.0])),
        "the machine's cores": machine / cores,
    }
    # Costs per unit of work move less with the machine's other load than latencies do.
    reports = len(in_window)
    events = sum(1 for s in found["sse"]["seen"] if tuple(s[:3]) in in_window)
    emit({"bench": "control_plane", "figure": "cost_per_report",
          "redis_commands": round(sum(c for c, _ in calls.values()) / reports, 2),
          "redis_cpu_us": round(1e6 * redis_cores * window_s / reports, 1),
          "driver_cpu_ms": round(1e3 * sum(used.get("driver", [])) * window_s / reports, 3),
          "gateway_cpu_ms_per_streamed_event": round(
              1e3 * sum(used.get("gateway", [])) * window_s / max(1, events), 3)})  # fmt: skip
    first = max(loads, key=lambda k: loads[k])
    emit({"bench": "control_plane", "figure": "saturation", "first": first,
          "share_of_its_ceiling": {k: round(v, 3) for k, v in loads.items()}})  # fmt: skip


if __name__ == "__main__":
    main()
