"""The gateway as a Ray Serve deployment: each replica builds its own FastAPI app."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from services.gateway.app import create_app
from shared.settings import Settings


@serve.deployment(
    name="gateway",
    # The gateway only parses and forwards; reserving a CPU would take one from trials.
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=200,
)
@serve.ingress()
class Gateway:
    """HTTP ingress of tunefleet; predictions go to the predictor through ``predictor``."""

    def __init__(self, settings: Settings, predictor: DeploymentHandle) -> None:
        self._settings = settings
        self._predictor = predictor

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self._settings, predict=self._predict)

    async def _predict(self, model_id: str, matrix: np.ndarray) -> dict[str, Any]:
        handle = self._predictor.options(multiplexed_model_id=model_id)
        answer: dict[str, Any] = await handle.predict.remote(model_id, matrix)
        return answer
