"""Canary rollout of an alias: its traffic split between models by weight, each answer
naming the model that answered, GET /metrics counting each, and promotion moving all the
weight to one model. In process (no Serve): one app stands for a predictor replica."""

from __future__ import annotations

import math
import re

import pytest
from fastapi.testclient import TestClient

from services.edge.metrics import metrics_of
from services.gateway.app import create_app as create_gateway
from shared.settings import Settings
from tests.helpers.models import LOCAL, import_model, replica

ROWS = {"instances": [[0.1, 0.2, 0.3, 0.4]]}
REQUESTS = 1000


@pytest.fixture
def models(settings: Settings) -> TestClient:
    """A replica that keeps the models it loaded: a thousand predictions in seconds."""
    return replica(settings, keep_models=True)


def predicted_counts(models: TestClient, settings: Settings) -> dict[str, int]:
    """The predict requests the gateway's GET /metrics counts, per model, once this
    replica has written its counts."""
    metrics_of(models.app).flush()
    with TestClient(create_gateway(settings), base_url=LOCAL) as gateway:
        text = gateway.get("/metrics").text
    found = re.findall(r'tunefleet_predictions_total\{model="([0-9a-f]{32})"\} (\S+)', text)
    return {model_id: int(float(count)) for model_id, count in found}


def test_a_split_alias_answers_by_weight_and_names_the_model_that_answered(
    models: TestClient, settings: Settings
) -> None:
    stable, canary = (import_model(models).json()["id"] for _ in range(2))
    answer = models.put("/aliases/prod", json={"models": {stable: 9, canary: 1}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "alias": "prod", "model_id": stable, "models": {stable: 0.9, canary: 0.1}
    }  # fmt: skip
    assert models.get("/aliases/prod").json() == answer.json()
    assert models.get("/aliases").json()["prod"] == stable  # the alias's model: the most weight

    answered = [
        models.post("/prod/predict", json=ROWS).json()["model"]["id"] for _ in range(REQUESTS)
    ]
    to_canary = answered.count(canary)
    assert answered.count(stable) + to_canary == REQUESTS
    # Binomial(1000, 0.1): mean 100, standard deviation 9.5; five of them either side
    # (a false alarm in about one run of 1.7 million).
    spread = 5 * math.sqrt(REQUESTS * 0.1 * 0.9)
    assert abs(to_canary - 100) < spread, to_canary
    # The metrics count each model's answers.
    assert predicted_counts(models, settings) == {stable: REQUESTS - to_canary, canary: to_canary}

    # Promotion: all the weight to the canary.
    promoted = models.put("/aliases/prod", json={"model_id": canary})
    assert promoted.json()["models"] == {canary: 1.0}
    assert {models.post("/prod/predict", json=ROWS).json()["model"]["id"] for _ in range(50)} == {
        canary
    }


def test_a_model_in_a_canary_cannot_be_deleted_and_bad_splits_say_what_to_fix(
    models: TestClient,
) -> None:
    stable, canary = (import_model(models).json()["id"] for _ in range(2))
    assert models.put("/aliases/prod", json={"models": {stable: 0.95, canary: 0.05}}).is_success
    refused = models.delete(f"/{canary}")  # it has the least weight, and still answers
    assert refused.status_code == 409 and "alias 'prod'" in refused.json()["detail"]

    unknown = "f" * 32
    for body, status, says in (
        ({"models": {stable: 1, unknown: 1}}, 404, unknown),
        ({"models": {stable: 0, canary: 1}}, 422, "greater than 0"),
        ({"models": {}}, 422, "at least 1"),
        ({"model_id": stable, "models": {stable: 1}}, 422, "either"),
        ({}, 422, "either"),
    ):
        answer = models.put("/aliases/prod", json=body)
        assert answer.status_code == status and says in answer.text, (body, answer.text)
    # Nothing refused changed the split.
    assert models.get("/aliases/prod").json()["models"] == {stable: 0.95, canary: 0.05}
    assert models.delete("/aliases/prod").status_code == 204
    assert models.get("/aliases/prod").status_code == 404
    assert models.delete(f"/{canary}").status_code == 204
