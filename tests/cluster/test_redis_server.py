"""The embedded redis-server outlives a Ctrl-C in the terminal: the terminal sends SIGINT
to the whole foreground process group, and `tunefleet up` must stop its drivers, which
hand their jobs back through Redis, before it stops Redis itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

# Stands in for `tunefleet up`: starts Redis, waits for Ctrl-C, then asks Redis.
UP = textwrap.dedent(
    """
    import signal, sys, threading, time
    from pathlib import Path
    import redis
    from cluster.redis_server import RedisServer

    interrupted = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    server = RedisServer(Path(sys.argv[1]))
    url = server.start()
    print("up", flush=True)
    interrupted.wait(30)
    time.sleep(1)  # the drivers stopping: Redis has had time to act on a SIGINT of its own
    try:
        print("answers" if redis.Redis.from_url(url).ping() else "silent", flush=True)
    except redis.ConnectionError:
        print("gone", flush=True)
    server.stop()
    """
)


def test_a_ctrl_c_to_the_process_group_leaves_redis_to_the_stack(tmp_path: Path) -> None:
    up = subprocess.Popen(
        [sys.executable, "-c", UP, str(tmp_path)],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert up.stdout is not None
    assert up.stdout.readline().strip() == "up"
    os.killpg(up.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    assert up.stdout.readline().strip() == "answers"
    assert up.wait(30) == 0
