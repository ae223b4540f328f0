"""The Serve application of tunefleet: the gateway with a handle to the predictor."""

from __future__ import annotations

from ray.serve import Application

from services.gateway.deployment import Gateway
from services.predictor.deployment import Predictor
from shared.settings import Settings

APP_NAME = "tunefleet"


def build_application(settings: Settings) -> Application:
    """Gateway (HTTP ingress at /) bound to an autoscaling predictor deployment."""
    predictor = Predictor.options(  # type: ignore[attr-defined]
        autoscaling_config={
            "min_replicas": settings.predictor_min_replicas,
            "max_replicas": settings.predictor_max_replicas,
            "target_ongoing_requests": 8,
        }
    )
    # serve.deployment's decorators are untyped: mypy cannot see .bind on them.
    return Gateway.bind(settings, predictor.bind(settings))  # type: ignore[attr-defined]
