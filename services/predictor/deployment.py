"""The predictor as a Ray Serve deployment: the /models API, many models per replica,
batched requests."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI
from ray import serve

from services.predictor.app import create_app
from shared.errors import InvalidInputError
from shared.model import ModelBundle
from shared.preprocessing import ValueReadError
from shared.registry import ModelRegistry
from shared.settings import Settings, get_settings

log = logging.getLogger("ray.serve")

# serve.multiplexed takes its limit when the class is defined; the replica's
# environment is the stack's, so the setting is read the same way everywhere.
MAX_MODELS_PER_REPLICA = get_settings().max_models_per_replica


# Where replicas run, their limits and autoscaling: cluster.serve_app.
@serve.deployment(name="predictor")
@serve.ingress()
class Predictor:
    """Serves the best model of any succeeded job, keyed by model id, over HTTP.

    Models load on demand, once per replica (``@serve.multiplexed``, least recently
    used out first); concurrent requests are batched (``@serve.batch``), one forward
    pass per model in a batch.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # These networks are tiny: one intra-op thread answers a forward pass in a tenth
        # of the time two do when the cores are busy (18 vs 161 us for a 64 x 64 layer
        # here, under load), and the replica shares its cores with the proxy.
        torch.set_num_threads(1)
        assert settings.redis_url is not None
        self._registry = ModelRegistry.from_url(settings.redis_url)
        # serve.batch's setters are not in its type annotation.
        batch: Any = self._predict_batch
        batch.set_max_batch_size(settings.predict_max_batch_size)
        batch.set_batch_wait_timeout_s(settings.predict_batch_wait_s)

    def __serve_build_asgi_app__(self) -> FastAPI:
        # One registry (and its cache of records) for the routes and the model loader.
        return create_app(self._settings, self._registry, predict=self.predict)

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def get_model(self, model_id: str) -> ModelBundle:
        """Load a model's checkpoint (never unpickling objects), off the event loop that
        the replica's requests share: a Redis read and a file (or bucket) read."""
        bundle = await asyncio.to_thread(self._load, model_id)
        log.info("loaded model %s into this replica", model_id)
        return bundle

    def _load(self, model_id: str) -> ModelBundle:
        record = self._registry.get(model_id)
        return ModelBundle.load(self._settings.storage_at(record.checkpoint_uri))

    async def predict(self, model_id: str, columns: dict[str, Any]) -> dict[str, Any]:
        """Predictions for raw rows, given as columns by name. The model's plan encodes
        one request's rows on their own, so that a cell it cannot read is named by its
        own row; the encoded rows are then batched with other requests'."""
        bundle = await self.get_model(model_id)
        try:
            encoded = bundle.encode(columns)
        except ValueReadError as exc:
            raise InvalidInputError(f"instance {exc.row}, {exc.detail}") from None
        # The bundle travels with the rows: one lookup of the multiplexed model a request.
        answer: dict[str, Any] = await self._predict_batch((model_id, bundle, encoded))
        if "error" in answer:
            raise answer["error"]
        return answer

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _predict_batch(
        self, requests: list[tuple[str, ModelBundle, np.ndarray]]
    ) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = [{} for _ in requests]
        for model_id in {model_id for model_id, _, _ in requests}:
            mine = [i for i, (m, _, _) in enumerate(requests) if m == model_id]
            try:
                bundle = requests[mine[0]][1]
                rows = np.concatenate([requests[i][2] for i in mine])
                predictions, probabilities = bundle.predict_encoded(rows)
            except Exception as exc:  # this model's requests fail, not the whole batch
                for i in mine:
                    answers[i] = {"error": exc}
                continue
            start = 0
            for i in mine:
                end = start + len(requests[i][2])
                answers[i] = {
                    "predictions": predictions[start:end],
                    "probabilities": (
                        probabilities[start:end].tolist() if probabilities is not None else None
                    ),
                }
                start = end
        return answers

    def check_health(self) -> None:
        """Serve restarts a replica that cannot reach the registry."""
        self._registry.ping()
