"""The HTTP edge that tunefleet's two HTTP services, the gateway and the predictor,
share: errors mapped to statuses (errors.py), who a request acts for (deps.py), which
requests are refused before any route sees them (guards.py), and what is counted for
GET /metrics (metrics.py). Not a service: both import it, and it imports no service."""

from __future__ import annotations

import redis
from fastapi import FastAPI

from services.edge.errors import add_error_handlers
from services.edge.guards import BodyLimit, LoopbackOnlyWithoutKeys
from services.edge.metrics import CountResponses, HttpMetrics
from shared.auth import LOOPBACK_HOSTS, KeyStore
from shared.settings import Settings


def install_edge(
    app: FastAPI,
    settings: Settings,
    client: redis.Redis,
    upload_paths: tuple[str, ...],
    app_name: str,
) -> None:
    """What every tunefleet app has at its edge: API keys, errors mapped to HTTP (and
    documented; a Redis outage is 503), body limits (``upload_paths`` take files up to
    the upload limit), answers counted by status for GET /metrics (as ``app_name``),
    and, on a stack without keys, no requests by other names or from other sites'
    pages."""
    app.state.keys = KeyStore(client, settings.redis_url)
    app.state.http_metrics = HttpMetrics(client, app_name)
    # Were every key revoked while the stack listens beyond this machine, nobody may in.
    app.state.open_without_keys = settings.http_host in LOOPBACK_HOSTS
    add_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        body_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
        upload_paths=upload_paths,
    )
    # Outside the body limit: its 413s are counted too.
    app.add_middleware(CountResponses, metrics=app.state.http_metrics)
    if app.state.open_without_keys:
        # Added last, so it runs first: a refused request reads no body.
        host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
        own_url = f"http://{host}:{settings.http_port}"
        app.add_middleware(LoopbackOnlyWithoutKeys, keys=app.state.keys, own_url=own_url)
