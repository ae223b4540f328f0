"""The Serve applications of tunefleet: the gateway at / and the predictor at /models,
and every deployment option (where replicas run, their limits, autoscaling) in one place."""

from __future__ import annotations

from ray.serve import Application

from services.gateway.deployment import Gateway
from services.predictor.deployment import Predictor
from shared.settings import Settings

GATEWAY_APP = "tunefleet"
PREDICTOR_APP = "tunefleet-models"
PREDICTOR_ROUTE = "/models"
# Replicas stay on the head, beside Redis and the stack: workers are for trials, and a
# replica on a worker would keep the autoscaler from removing it when idle.
# No CPU reserved: the gateway only parses and queues, and inference of these small
# networks is light; a reserved CPU would be one fewer for trials.
ON_THE_HEAD = {"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}}
# Requests one replica takes at once before Serve queues them at the proxy.
MAX_ONGOING_REQUESTS = 200


def build_gateway(settings: Settings) -> Application:
    """The HTTP ingress for jobs, datasets, health, and the Open Inference Protocol (/v2),
    which predicts through the predictor application."""
    # serve.deployment's decorators are untyped: mypy cannot see .bind on them.
    gateway = Gateway.options(  # type: ignore[attr-defined]
        ray_actor_options=ON_THE_HEAD, max_ongoing_requests=MAX_ONGOING_REQUESTS
    )
    return gateway.bind(settings, predictor_app=PREDICTOR_APP)


def build_predictor(settings: Settings) -> Application:
    """The /models API with the models in its replicas, autoscaled on ongoing requests."""
    predictor = Predictor.options(  # type: ignore[attr-defined]
        ray_actor_options=ON_THE_HEAD,
        max_ongoing_requests=MAX_ONGOING_REQUESTS,
        autoscaling_config={
            "min_replicas": settings.predictor_min_replicas,
            "max_replicas": settings.predictor_max_replicas,
            "target_ongoing_requests": 8,
        },
    )
    return predictor.bind(settings)
