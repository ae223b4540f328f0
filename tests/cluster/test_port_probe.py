"""`tunefleet up` refuses a port something listens on, and only that: connections a
stopped stack had closed (TIME_WAIT) do not keep it from starting again at once."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cluster.stack import _check_http_port
from shared.settings import Settings


def test_a_port_left_in_time_wait_is_free_and_a_listened_one_is_not(tmp_path: Path) -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    settings = Settings(home=tmp_path, http_host="127.0.0.1", http_port=port)
    with pytest.raises(SystemExit, match="is another tunefleet running"):
        _check_http_port(settings)
    # A keep-alive connection that the server side closes first, as a stopping stack
    # does: its socket stays in TIME_WAIT on the port.
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()
    server.close()
    client.recv(1)
    client.close()
    _check_http_port(settings)  # starts again at once
