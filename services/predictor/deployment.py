"""The predictor as a Ray Serve deployment: many models per replica, loaded on demand."""

from __future__ import annotations

from typing import Any

import numpy as np
import redis
from ray import serve

from shared.model import ModelBundle
from shared.registry import ModelRegistry
from shared.settings import Settings


@serve.deployment(name="predictor", ray_actor_options={"num_cpus": 0})
class Predictor:
    """Serves the best model of any succeeded job, keyed by model id (multiplexed)."""

    def __init__(self, settings: Settings) -> None:
        assert settings.redis_url is not None
        self._registry = ModelRegistry(
            redis.Redis.from_url(settings.redis_url, decode_responses=True)
        )

    @serve.multiplexed(max_num_models_per_replica=8)
    async def get_model(self, model_id: str) -> ModelBundle:
        """Load a model once per replica; the least recently used one leaves first."""
        record = self._registry.get(model_id)
        return ModelBundle.load(record.checkpoint_uri)

    async def predict(self, matrix: np.ndarray) -> dict[str, Any]:
        bundle = await self.get_model(serve.get_multiplexed_model_id())
        predictions, probabilities = bundle.predict(matrix)
        return {
            "predictions": predictions,
            "probabilities": probabilities.tolist() if probabilities is not None else None,
        }

    def check_health(self) -> None:
        self._registry.recent(limit=1)
