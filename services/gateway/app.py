"""The gateway's FastAPI application: routes, and errors mapped to HTTP in one place."""

from __future__ import annotations

import redis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.gateway.deps import PredictFn, Services
from services.gateway.routes import datasets, health, jobs, models
from shared.data import DatasetStore
from shared.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    TunefleetError,
)
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings

_STATUS_OF_ERROR: dict[type[TunefleetError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    InvalidInputError: 422,
    QueueFullError: 429,
}


def create_app(settings: Settings, predict: PredictFn) -> FastAPI:
    """Build the gateway app on a Redis at ``settings.redis_url``."""
    if settings.redis_url is None:
        raise ValueError("the gateway needs TUNEFLEET_REDIS_URL")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    app = FastAPI(
        title="tunefleet",
        summary="Hyperparameter tuning for PyTorch networks on a Ray cluster.",
        version="0.1.0",
    )
    app.state.services = Services(
        settings=settings,
        jobs=JobStore(client, settings.queue_policy()),
        registry=ModelRegistry(client),
        datasets=DatasetStore(settings.datasets_dir),
        predict=predict,
    )
    for router in (jobs.router, datasets.router, models.router, health.router):
        app.include_router(router)
    app.add_exception_handler(TunefleetError, _tunefleet_error)
    return app


async def _tunefleet_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in _STATUS_OF_ERROR.items() if isinstance(exc, kind)), 500)
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)
