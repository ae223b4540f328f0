"""Ray nodes on this machine, started the way an operator starts them (`ray start`) and
stopped by their process ids, for the tests that need more than one node."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cluster.redis_server import free_port

RAY = Path(sys.executable).parent / "ray"
# Lists Ray takes from its provider defaults when a config leaves them out; on AWS those
# install a nightly Ray.
COMMAND_LISTS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


class RayCluster:
    """Ray nodes started the way an operator starts them, stopped by their process ids
    (never `ray stop`, which would stop every Ray on the machine)."""

    def __init__(self) -> None:
        # Short: Ray puts Unix sockets below it, and their paths have a length limit.
        self.temp_dir = tempfile.mkdtemp(prefix="tfr", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # A token of its own, so that the cluster needs no ~/.ray/auth_token.
        self.token = secrets.token_hex(32)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.env.pop("RAY_ADDRESS", None)

    def start_head(self, *extra: str) -> None:
        """The head, with no CPUs for trials (as on the cluster configs' heads)."""
        self._ray_start(
            "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
            f"--ray-client-server-port={free_port()}", "--num-cpus=0",
            "--include-dashboard=false", *extra,
        )  # fmt: skip

    def add_worker(self, *resources: str, prefix: tuple[str, ...] = ()) -> None:
        """A worker node; ``prefix`` runs `ray start` under another command."""
        self._ray_start(f"--address={self.address}", *resources, prefix=prefix)

    def nodes(self) -> list[dict[str, Any]]:
        """The alive nodes: id and resources, read by a short-lived Ray client."""
        code = (
            f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR');"
            "print('NODES', json.dumps([{'id': n['NodeID'], 'resources': n['Resources']}"
            " for n in ray.nodes() if n['Alive']]))"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr[-2000:]
        # Ray prints the autoscaler's events on the client's stdout too.
        (line,) = [line for line in out.stdout.splitlines() if line.startswith("NODES ")]
        nodes: list[dict[str, Any]] = json.loads(line.removeprefix("NODES "))
        return nodes

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.nodes()
            if len(nodes) >= count or time.monotonic() > deadline:
                return nodes
            time.sleep(2)

    def log_tail(self, name: str = "monitor.log", chars: int = 3000) -> str:
        """The end of one of the head's Ray logs (monitor.log: the autoscaler's)."""
        path = Path(self.temp_dir) / "session_latest" / "logs" / name
        return path.read_text(errors="replace")[-chars:] if path.exists() else f"(no {path})"

    def stop(self) -> list[int]:
        """Kill every process of this cluster; those still alive a moment later."""
        ours = _processes_of(self.temp_dir, f":{self.port}")
        for pid in ours:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _processes_of(self.temp_dir, f":{self.port}"):
            time.sleep(0.5)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return sorted(_processes_of(self.temp_dir, f":{self.port}"))

    def _ray_start(self, *args: str, prefix: tuple[str, ...] = ()) -> None:
        done = subprocess.run(
            [*prefix, str(RAY), "start", *args, "--disable-usage-stats"],
            env=self.env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _processes_of(*marks: str) -> set[int]:
    """Processes whose command line carries one of ``marks``, and all below them."""

    def command(pid: str) -> str:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return ""

    found = {
        int(pid)
        for pid in os.listdir("/proc")
        if pid.isdigit() and any(mark in command(pid) for mark in marks)
    }
    frontier = list(found)
    while frontier:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(frontier.pop())], capture_output=True, text=True
        ).stdout
        children = {int(p) for p in out.split()} - found
        found |= children
        frontier.extend(children)
    found.discard(os.getpid())
    return found
