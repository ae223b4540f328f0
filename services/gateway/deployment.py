"""The gateway as a Ray Serve deployment: each replica builds its own FastAPI app."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from services.gateway.app import create_app
from shared.settings import Settings


# Where replicas run and their limits: cluster.serve_app, for every deployment at once.
@serve.deployment(name="gateway")
@serve.ingress()
class Gateway:
    """HTTP ingress of tunefleet for jobs, datasets and health, and the Open Inference
    Protocol's /v2, whose predictions the predictor application's replicas make."""

    def __init__(self, settings: Settings, predictor_app: str) -> None:
        self._settings = settings
        self._predictor_app = predictor_app
        self._predictor: DeploymentHandle | None = None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self._settings, predict=self._predict)

    async def _predict(self, model_id: str, columns: dict[str, Any]) -> dict[str, Any]:
        """The predictor's answer for raw columns; a replica that holds the model
        already is preferred (Serve's model multiplexing)."""
        if self._predictor is None:
            self._predictor = serve.get_app_handle(self._predictor_app)
        call = self._predictor.options(multiplexed_model_id=model_id)
        try:
            answer: dict[str, Any] = await call.predict.remote(model_id, columns)
        except RayTaskError as exc:
            # The predictor's own error (a cell it cannot read, a deleted model), as if
            # raised here: the edge maps it to its status.
            raise exc.cause from None
        return answer
