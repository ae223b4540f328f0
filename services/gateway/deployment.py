"""The gateway as a Ray Serve deployment: each replica builds its own FastAPI app."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from services.gateway.app import create_app
from shared.settings import Settings


# Where replicas run and their limits: cluster.serve_app, for every deployment at once.
@serve.deployment(name="gateway")
@serve.ingress()
class Gateway:
    """HTTP ingress of tunefleet for jobs, datasets and health."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self._settings)
