"""The gateway's FastAPI application: jobs, datasets and health."""

from __future__ import annotations

import redis
from fastapi import FastAPI

from services.gateway.dashboard import add_dashboard
from services.gateway.deps import Services
from services.gateway.routes import datasets, health, jobs
from shared.auth import LOOPBACK_HOSTS, KeyStore
from shared.capacity import CapacityStore
from shared.http_edge import BodyLimit, add_error_handlers
from shared.jobs import JobStore
from shared.results import EventFeed
from shared.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the gateway app on a Redis at ``settings.redis_url``."""
    if settings.redis_url is None:
        raise ValueError("the gateway needs TUNEFLEET_REDIS_URL")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    app = FastAPI(
        title="tunefleet",
        summary="Hyperparameter tuning for PyTorch networks on a Ray cluster. "
        "Models and predictions: /models/docs.",
        version="0.1.0",
    )
    app.state.keys = KeyStore(client)
    # Were every key revoked while the stack listens beyond this machine, nobody may in.
    app.state.open_without_keys = settings.http_host in LOOPBACK_HOSTS
    app.state.services = Services(
        settings=settings,
        jobs=JobStore(client, settings.queue_policy()),
        events=EventFeed.from_url(settings.redis_url),
        capacity=CapacityStore(client),
    )
    for router in (jobs.router, datasets.router, health.router):
        app.include_router(router)
    add_dashboard(app)
    add_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        body_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
        upload_paths=("/datasets",),
    )
    return app
