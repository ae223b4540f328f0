"""Checkpoints as the trainable writes them, and a predictor replica in process to
import them into."""

from __future__ import annotations

import io
from typing import Any

import redis
import torch
from fastapi.testclient import TestClient

from services.predictor.app import create_app
from shared.model import MLP, ModelBundle, checkpoint_payload
from shared.registry import ModelRegistry
from shared.settings import Settings

# TestClient's own default, "testserver", is not a loopback name.
LOCAL = "http://127.0.0.1"
META = '{"validation_value": 0.9}'


def payload(
    n_features: int = 4, n_outputs: int = 3, hidden_units: int = 8, hidden_layers: int = 2
) -> dict[str, Any]:
    """A classifier's checkpoint content, as the trainable writes it."""
    architecture = {
        "n_features": n_features,
        "n_outputs": n_outputs,
        "hidden_units": hidden_units,
        "hidden_layers": hidden_layers,
        "dropout": 0.1,
    }
    return checkpoint_payload(
        MLP(**architecture).state_dict(),
        architecture,
        task="classification",
        feature_names=[f"f{i}" for i in range(n_features)],
        classes=list(range(n_outputs)),
        scale=torch.ones(n_features),
        offset=torch.zeros(n_features),
        target_mean=0.0,
        target_std=1.0,
    )


def saved(content: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(content, buffer)
    return buffer.getvalue()


def replica(settings: Settings, keep_models: bool = False) -> TestClient:
    """One predictor replica's app in process; it loads a model's checkpoint for every
    prediction (a deleted one is gone at once), or, ``keep_models``, once (as Serve's
    replicas do)."""
    assert settings.redis_url is not None
    registry = ModelRegistry(redis.Redis.from_url(settings.redis_url, decode_responses=True))
    kept: dict[str, ModelBundle] = {}

    async def predict(model_id: str, columns: dict[str, Any]) -> dict[str, Any]:
        record = registry.get(model_id)
        bundle = kept.get(model_id) or ModelBundle.load(record.checkpoint_uri)
        if keep_models:
            kept[model_id] = bundle
        predictions, probabilities = bundle.predict_encoded(bundle.encode(columns))
        return {
            "predictions": predictions,
            "probabilities": probabilities.tolist() if probabilities is not None else None,
        }

    return TestClient(create_app(settings, registry, predict), base_url=LOCAL)


def import_model(models: TestClient, key: str | None = None, **sizes: int) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return models.post(
        "/import",
        files={"checkpoint": ("model.pt", saved(payload(**sizes)))},
        data={"meta": META},
        headers=headers,
    )
