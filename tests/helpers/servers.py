"""An app on a real HTTP server in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from cluster.redis_server import free_port


@contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """``app`` on a real HTTP server on 127.0.0.1 (a TestClient cannot hold a stream
    open); its URL."""
    port = free_port()
    # No log_config: the server's own logs reach the test's log capture.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
