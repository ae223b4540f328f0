"""The gateway's FastAPI application: jobs, datasets and health."""

from __future__ import annotations

import redis
from fastapi import FastAPI

from services.edge import install_edge
from services.gateway.dashboard import add_dashboard
from services.gateway.deps import Services
from services.gateway.routes import datasets, health, jobs, metrics, outputs
from services.gateway.stream_slots import StreamSlots
from services.predictor import oip_routes
from services.predictor.deps import ModelServices, PredictFn
from services.predictor.model_files import ImportedModelFiles
from shared.about import tunefleet_version
from shared.capacity import CapacityStore
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.results import EventFeed, ResultStore
from shared.settings import Settings


def create_app(settings: Settings, predict: PredictFn | None = None) -> FastAPI:
    """Build the gateway app on a Redis at ``settings.redis_url``; with ``predict`` (the
    way to the predictor's replicas), it answers the Open Inference Protocol at /v2."""
    if settings.redis_url is None:
        raise ValueError("the gateway needs TUNEFLEET_REDIS_URL")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    app = FastAPI(
        title="tunefleet",
        summary="Hyperparameter tuning for PyTorch networks on a Ray cluster. "
        "Models and predictions: /models/docs.",
        version=tunefleet_version(),
    )
    results = ResultStore(client)
    app.state.services = Services(
        settings=settings,
        jobs=JobStore(client, settings.queue_policy(), results=results),
        results=results,
        events=EventFeed.from_url(settings.redis_url),
        capacity=CapacityStore(client),
        streams=StreamSlots(settings.max_event_streams_per_tenant),
    )
    routers = (jobs.router, outputs.router, datasets.router, health.router, metrics.router)
    for router in routers:
        app.include_router(router)
    if predict is not None:
        app.state.oip = ModelServices(
            settings=settings,
            jobs=app.state.services.jobs,
            registry=ModelRegistry.from_url(settings.redis_url),
            predict=predict,
            model_files=ImportedModelFiles(settings.models_dir),
        )
        app.include_router(oip_routes.router)
    add_dashboard(app)
    install_edge(app, settings, client, upload_paths=("/datasets",), app_name="gateway")
    if predict is not None:
        # Added last, so it runs first: every error under /v2 is reshaped, the edge's too.
        app.add_middleware(oip_routes.OipErrors)
    return app
