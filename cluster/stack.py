"""`tunefleet up`: Redis, Ray, Serve and a driver on this machine, in the foreground."""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from types import FrameType

import ray
from ray import serve

from cluster.processes import alive, command_of, descendants, end
from cluster.redis_server import RedisServer, free_port
from cluster.serve_app import (
    GATEWAY_APP,
    PREDICTOR_APP,
    PREDICTOR_ROUTE,
    build_gateway,
    build_predictor,
)
from shared.auth import LOOPBACK_HOSTS, KeyStore
from shared.settings import Settings

log = logging.getLogger("tunefleet")
DRIVER_STOP_TIMEOUT_S = 20.0
WATCH_INTERVAL_S = 0.5
# How long a process the stop left running has to end on SIGTERM before SIGKILL.
LEFT_BEHIND_GRACE_S = 5.0
# Ports besides the API's behind HAProxy: its Prometheus exporter and its stats page (on
# every interface: Ray's template binds them so), and Serve's Python proxy, which HAProxy
# falls back to while an application has no ingress replica up (HTTP and gRPC).
HAPROXY_SIDE_PORTS = (
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)
# Behind HAProxy every ingress replica listens on a port of its own, HTTP and gRPC, from
# these ranges; Serve's defaults (30000-31000, 40000-41000) are the same for every stack.
DIRECT_INGRESS_RANGES = (
    ("RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT", "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT"),
    ("RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT", "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT"),
)
DIRECT_INGRESS_BLOCK = 50  # ports per range: replicas, and those Serve holds back a while
# Where a stack's block is drawn from: above Ray's worker ports (10002-19999) and below
# the kernel's ephemeral ports (32768 and up on Linux), which outgoing connections take.
DIRECT_INGRESS_SPAN = (20000, 30000)


def up(settings: Settings) -> None:
    """Run the whole stack until SIGINT, SIGTERM or SIGHUP, then stop every part of it."""
    stopping = hung_up = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping, hung_up
        stopping = True
        hung_up = hung_up or signum == signal.SIGHUP

    # SIGHUP too: a terminal closed while the stack runs (or while Ctrl-C stops it) must
    # not end this process before it has stopped Redis, which is in a session of its own.
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, request_stop)
    _check_http_port(settings)

    running_at_stop: set[int] = set()
    with ExitStack() as parts:
        # Registered first, so that it runs last, once every part has been stopped.
        parts.callback(_end_left_behind, running_at_stop)
        server, redis_url = _start_redis(settings, parts)
        settings = settings.model_copy(update={"redis_url": redis_url})
        _check_exposure(settings, KeyStore.from_url(redis_url))
        settings.storage_root.mkdir(parents=True, exist_ok=True)
        _start_ray_and_serve(settings, parts, lambda: hung_up)
        driver_env = {
            **os.environ,
            "TUNEFLEET_REDIS_URL": redis_url,
            "TUNEFLEET_STORAGE": str(settings.storage_root),
            "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
        }
        drivers = [_start_driver(driver_env) for _ in range(settings.max_running_jobs)]
        parts.callback(lambda: _stop_all(drivers))
        log.info(
            "tunefleet is up: http://%s:%d (API docs at /docs), storage %s. Ctrl-C stops it.",
            settings.http_host,
            settings.http_port,
            settings.storage_root,
        )
        redis_down = False
        while not stopping:
            if server is not None and (redis_down or server.exited() is not None):
                redis_down = not _restart_redis(server)
            for index, driver in enumerate(drivers):
                if driver.poll() is not None:
                    log.warning("driver exited with code %s; starting a new one", driver.returncode)
                    drivers[index] = _start_driver(driver_env)
            time.sleep(WATCH_INTERVAL_S)
        log.info("stopping tunefleet")
        running_at_stop.update(descendants(os.getpid()))


def _end_left_behind(running_at_stop: set[int]) -> None:
    """End what the stop of every part left running of what ran below this process when
    the stop began. A closed terminal hangs up Ray's processes too (they share its
    process group), and a Serve controller cut off that way leaves its HAProxy behind."""
    left = {pid for pid in running_at_stop if alive(pid)}
    if left:
        named = ", ".join(f"{command_of(pid)} ({pid})" for pid in sorted(left))
        log.warning("stopping what the stop left running: %s", named)
        end(left, grace_s=LEFT_BEHIND_GRACE_S)


def _start_redis(settings: Settings, parts: ExitStack) -> tuple[RedisServer | None, str]:
    """The embedded redis-server, unless TUNEFLEET_REDIS_URL names one; and the URL of
    the Redis to use."""
    if settings.redis_url is not None:
        return None, settings.redis_url
    server = RedisServer(settings.home / "redis", settings.redis_port)
    redis_url = server.start()
    parts.callback(server.stop)
    # Where `tunefleet keys` finds this Redis while the stack runs.
    url_file = settings.embedded_redis_url_file
    url_file.write_text(redis_url)
    parts.callback(lambda: url_file.unlink(missing_ok=True))
    log.info("Redis: %s (append-only files in %s)", redis_url, server.data_dir)
    return server, redis_url


def _start_ray_and_serve(settings: Settings, parts: ExitStack, hung_up: Callable[[], bool]) -> None:
    """A local Ray (or the cluster at TUNEFLEET_RAY_ADDRESS), Serve's proxy on the head,
    and the two applications. At the stop, Serve is shut down, unless the terminal hung
    up on a local Ray: its controller had the hang-up too, and serve.shutdown() would
    wait ~25 s for it to answer before giving up; what the hang-up left of Serve is
    ended with the rest of what the stop left running."""
    if settings.serve_proxy == "haproxy":
        # Read by Ray's own processes, which inherit this environment.
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        # Serve's throughput mode, which Ray pairs with HAProxy: a replica runs its
        # requests on its own event loop (not a second thread's) and buffers its
        # access log. Its replicas would log to their files only; they go on logging
        # to stderr too, which Ray shows in this process's output.
        os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")
        os.environ.setdefault("RAY_SERVE_LOG_TO_STDERR", "1")
        # Behind HAProxy, Serve holds each ingress replica open this long when it
        # stops (30 s by default), so that a load balancer in front can deregister
        # it; the only one here is Serve's own HAProxy, reloaded in well under a
        # second, and the default made Ctrl-C take 40 s.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "2")
        _haproxy_side_ports()
        _direct_ingress_ports()
    # "local" always starts a new Ray; RAY_ADDRESS joins an existing cluster.
    ray.init(
        address=settings.ray_address or "local",
        include_dashboard=False,
        logging_level=logging.WARNING,
    )
    parts.callback(ray.shutdown)
    # One HTTP proxy, on the head: the address users reach (and port-forward to).
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": settings.http_host, "port": settings.http_port},
    )
    # A cluster's controller (RAY_ADDRESS) had no hang-up: Serve is shut down there.
    local = settings.ray_address is None
    parts.callback(lambda: None if local and hung_up() else serve.shutdown())
    # Two applications: Serve's proxy sends /models/... straight to the predictor.
    # The predictor first: once the gateway answers /healthz, /models answers too.
    serve.run(build_predictor(settings), name=PREDICTOR_APP, route_prefix=PREDICTOR_ROUTE)
    serve.run(build_gateway(settings), name=GATEWAY_APP, route_prefix="/")


def _check_http_port(settings: Settings) -> None:
    """Refuse to start on a port something listens on. HAProxy binds with SO_REUSEPORT,
    so a second stack on the same port would start without a word and the two would
    share its connections, each request going to one or the other.

    The probe binds as servers do, with SO_REUSEADDR: without it, the connections a
    stack just stopped had closed (TIME_WAIT, up to a minute) refused the port though
    nothing listened. A listening socket still refuses it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.http_host, settings.http_port))
        except OSError as exc:
            raise SystemExit(
                f"cannot listen on {settings.http_host}:{settings.http_port}: {exc.strerror}"
                " (is another tunefleet running?); stop it, or set TUNEFLEET_HTTP_PORT to a "
                "free port"
            ) from exc


def _haproxy_side_ports() -> None:
    """HAProxy's side ports on free ports, unless set. With Serve's fixed defaults, the
    exporter's and stats page's (9101, 8404) kept a second stack on this machine (a
    test's, another user's) from starting while the first ran, and the fallback proxy's
    (8500, 9500), bound with SO_REUSEPORT, let each stack's HAProxy fall back to the
    other stack's proxy."""
    for variable in HAPROXY_SIDE_PORTS:
        if variable not in os.environ:
            os.environ[variable] = str(free_port())
    # One line: only someone chasing a port clash needs them.
    log.info(
        "HAProxy's side ports: %s",
        ", ".join(
            f"{name.removeprefix('RAY_SERVE_')}={os.environ[name]}" for name in HAPROXY_SIDE_PORTS
        ),
    )


def _direct_ingress_ports() -> None:
    """Ports for this stack's ingress replicas from a block nothing listens on, unless
    set. Serve binds them with SO_REUSEPORT, so with its fixed defaults two stacks on
    one machine bound the same ports without an error, and each HAProxy's connections
    went to either stack's replicas: one stack answered another's requests."""
    if any(variable in os.environ for pair in DIRECT_INGRESS_RANGES for variable in pair):
        return
    low, high = DIRECT_INGRESS_SPAN
    size = DIRECT_INGRESS_BLOCK * len(DIRECT_INGRESS_RANGES)
    draw = random.SystemRandom()
    for _ in range(100):
        base = draw.randrange(low, high - size)
        if all(_nothing_listens(port) for port in range(base, base + size)):
            break
    else:
        raise SystemExit(
            f"no {size} free ports in a row between {low} and {high} for Serve's replicas; "
            "set RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT and its MAX (and the GRPC pair)"
        )
    for index, (minimum, maximum) in enumerate(DIRECT_INGRESS_RANGES):
        start = base + index * DIRECT_INGRESS_BLOCK
        os.environ[minimum] = str(start)
        os.environ[maximum] = str(start + DIRECT_INGRESS_BLOCK)  # Serve's end is exclusive
    log.info("HAProxy: ingress replicas on ports %d-%d", base, base + size - 1)


def _nothing_listens(port: int) -> bool:
    # No SO_REUSEPORT here: the bind fails while any socket holds the port.
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return False
    return True


def _restart_redis(server: RedisServer) -> bool:
    """Start the embedded redis-server again (same port, same append-only files) after
    it died; the gateway answers 503 and the drivers wait meanwhile. False if it did
    not start (the port taken, the disk full): the next round tries again."""
    log.warning("redis-server is down (exit code %s); starting it again", server.exited())
    try:
        server.start()
    except RuntimeError as exc:
        log.error("redis-server did not start again: %s", exc)
        return False
    log.info("Redis: back on %s", server.url)
    return True


def _check_exposure(settings: Settings, keys: KeyStore) -> None:
    """No keys: auth is off, so only this machine may reach the API."""
    if keys.enabled():
        log.info("API keys are in use: every request needs 'Authorization: Bearer <key>'")
        return
    if settings.http_host not in LOOPBACK_HOSTS:
        raise SystemExit(
            f"refusing to listen on {settings.http_host} with no API key: anyone who can "
            "reach it would see every job, dataset and model. Create a key first "
            "(tunefleet keys create TENANT --admin), or keep TUNEFLEET_HTTP_HOST=127.0.0.1"
        )
    log.info("no API keys: auth is off, and tunefleet listens on %s only", settings.http_host)


def _start_driver(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its own session: Ctrl-C reaches `up` only, which then stops the driver in order.
    return subprocess.Popen(
        [sys.executable, "-m", "services.driver"], env=env, start_new_session=True
    )


def _stop_all(processes: list[subprocess.Popen[bytes]]) -> None:
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    deadline = time.monotonic() + DRIVER_STOP_TIMEOUT_S
    for process in running:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
