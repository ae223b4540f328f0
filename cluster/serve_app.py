"""The Serve applications of tunefleet: the gateway at / and the predictor at /models."""

from __future__ import annotations

from ray.serve import Application

from services.gateway.deployment import Gateway
from services.predictor.deployment import Predictor
from shared.settings import Settings

GATEWAY_APP = "tunefleet"
PREDICTOR_APP = "tunefleet-models"
PREDICTOR_ROUTE = "/models"


def build_gateway(settings: Settings) -> Application:
    """The HTTP ingress for jobs, datasets and health."""
    # serve.deployment's decorators are untyped: mypy cannot see .bind on them.
    return Gateway.bind(settings)  # type: ignore[attr-defined]


def build_predictor(settings: Settings) -> Application:
    """The /models API with the models in its replicas, autoscaled on ongoing requests."""
    predictor = Predictor.options(  # type: ignore[attr-defined]
        autoscaling_config={
            "min_replicas": settings.predictor_min_replicas,
            "max_replicas": settings.predictor_max_replicas,
            "target_ongoing_requests": 8,
        }
    )
    return predictor.bind(settings)
