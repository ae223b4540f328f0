"""The predictor's FastAPI application: /models, the registry and predictions, and the
Open Inference Protocol at /models/v2.

Serve routes every request under /models to this application (its route prefix),
so a prediction crosses one replica, not the gateway and then the predictor.
"""

from __future__ import annotations

import redis
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from services.edge import install_edge
from services.predictor import oip_routes, routes
from services.predictor.deps import ModelServices, PredictFn
from services.predictor.model_files import ImportedModelFiles
from shared.about import tunefleet_version
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings


def create_app(settings: Settings, registry: ModelRegistry, predict: PredictFn) -> FastAPI:
    """Build the /models app on a Redis at ``settings.redis_url``."""
    if settings.redis_url is None:
        raise ValueError("the predictor needs TUNEFLEET_REDIS_URL")
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    app = FastAPI(
        title="tunefleet models",
        summary="Registered models, their aliases, and predictions. Jobs: /docs.",
        version=tunefleet_version(),
    )
    app.state.services = ModelServices(
        settings=settings,
        jobs=JobStore(client, settings.queue_policy()),
        registry=registry,
        predict=predict,
        model_files=ImportedModelFiles(settings.models_dir),
    )
    # The Open Inference Protocol at /models/v2, answered in this replica: the fast way
    # for a client that takes a base path (the gateway's /v2 asks these replicas).
    app.state.oip = app.state.services
    app.include_router(oip_routes.router)
    app.include_router(routes.router)
    install_edge(app, settings, client, upload_paths=("/import",), app_name="predictor")
    app.add_middleware(oip_routes.OipErrors)
    app.add_middleware(_RootWithoutSlash)
    return app


class _RootWithoutSlash:
    """Serves ``/models`` as ``/models/`` instead of redirecting: Serve mounts this app
    at /models, and a route of the app cannot be the empty path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == scope.get("root_path", ""):
            scope = {**scope, "path": scope["path"] + "/"}
        await self.app(scope, receive, send)
