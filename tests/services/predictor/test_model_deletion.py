"""DELETE /models/{id} and the per-tenant quota of imported models, in process (no Serve).

Each app stands for one predictor replica: its own registry (and record cache), and
predictions that load the model's checkpoint as the deployment does.
"""

from __future__ import annotations

from pathlib import Path

import redis
from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from shared.auth import KeyStore
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.model import CHECKPOINT_FILE
from shared.registry import ModelRecord, ModelRegistry
from shared.settings import Settings
from shared.spec import JobSpec
from tests.helpers.models import import_model, payload, replica, saved

ROWS = {"instances": [[0.1, 0.2, 0.3, 0.4]]}


def test_a_deleted_imported_model_stops_answering_and_its_file_goes(
    models: TestClient, settings: Settings
) -> None:
    model_id = import_model(models).json()["id"]
    assert models.post(f"/{model_id}/predict", json=ROWS).status_code == 200
    assert (settings.models_dir / model_id / CHECKPOINT_FILE).is_file()

    assert models.delete(f"/{model_id}").status_code == 204
    assert models.get(f"/{model_id}").status_code == 404
    answer = models.post(f"/{model_id}/predict", json=ROWS)
    assert answer.status_code == 404 and "no model" in answer.json()["detail"]
    assert models.get("/").json() == []
    assert not (settings.models_dir / model_id).exists()
    assert models.delete(f"/{model_id}").status_code == 404


def test_another_replica_answers_404_once_the_checkpoint_is_gone(settings: Settings) -> None:
    first, second = replica(settings), replica(settings)
    model_id = import_model(first).json()["id"]
    assert second.post(f"/{model_id}/predict", json=ROWS).status_code == 200  # cached there

    assert first.delete(f"/{model_id}").status_code == 204
    answer = second.post(f"/{model_id}/predict", json=ROWS)
    assert answer.status_code == 404 and "has been deleted" in answer.json()["detail"]
    assert second.get(f"/{model_id}").status_code == 404


def test_a_model_an_alias_points_at_is_409_until_the_alias_moves(models: TestClient) -> None:
    old_id = import_model(models).json()["id"]
    new_id = import_model(models).json()["id"]
    assert models.put("/aliases/prod", json={"model_id": old_id}).status_code == 200

    refused = models.delete(f"/{old_id}")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "alias 'prod'" in detail and "PUT /models/aliases/prod" in detail
    assert models.post("/prod/predict", json=ROWS).json()["model"]["id"] == old_id

    assert models.put("/aliases/prod", json={"model_id": new_id}).status_code == 200
    assert models.delete(f"/{old_id}").status_code == 204
    assert models.post("/prod/predict", json=ROWS).json()["model"]["id"] == new_id
    assert models.put("/aliases/old", json={"model_id": old_id}).status_code == 404


def test_another_tenants_model_is_not_found(models: TestClient, redis_client: redis.Redis) -> None:
    keys = KeyStore(redis_client)
    alpha, beta = keys.create("alpha"), keys.create("beta")
    model_id = import_model(models, key=alpha).json()["id"]

    as_beta = {"Authorization": f"Bearer {beta}"}
    assert models.delete(f"/{model_id}", headers=as_beta).status_code == 404
    as_alpha = {"Authorization": f"Bearer {alpha}"}
    assert models.get(f"/{model_id}", headers=as_alpha).status_code == 200
    assert models.delete(f"/{model_id}", headers=as_alpha).status_code == 204


def test_a_jobs_model_is_deleted_but_its_checkpoint_stays_for_retention(
    models: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    jobs = JobStore(redis_client, settings.queue_policy())
    spec = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}}
    jobs.enqueue(JobSpec.model_validate(spec))
    lease = jobs.claim("d1")
    assert lease is not None
    checkpoint = settings.experiments_dir / lease.job_id / "t1" / "checkpoint_best"
    checkpoint.mkdir(parents=True)
    (checkpoint / CHECKPOINT_FILE).write_bytes(saved(payload()))
    record = ModelRecord(
        id=lease.job_id, job_id=lease.job_id, checkpoint_uri=str(checkpoint), config={},
        metric="val_accuracy", mode="max", validation_value=0.9, test_metrics={},
        feature_names=["f0", "f1", "f2", "f3"], classes=[0, 1, 2], created_at=0.0,
    )  # fmt: skip
    ModelRegistry(redis_client).register(record, lease)
    best = BestTrial(trial_id="t1", metric="val_accuracy", value=0.9, config={})
    jobs.succeed(lease, best, {})
    assert models.post(f"/{lease.job_id}/predict", json=ROWS).status_code == 200

    assert models.delete(f"/{lease.job_id}").status_code == 204
    # Its job succeeded and is still known: the model is gone, not yet to come (409).
    answer = models.post(f"/{lease.job_id}/predict", json=ROWS)
    assert answer.status_code == 404 and "has been deleted" in answer.json()["detail"]
    assert models.get(f"/{lease.job_id}").status_code == 404
    assert (checkpoint / CHECKPOINT_FILE).is_file()


def test_an_import_past_the_tenant_quota_is_413_until_room_is_made(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    size = len(saved(payload()))
    settings = Settings(
        redis_url=redis_server.url, home=tmp_path, max_model_bytes_per_tenant=size * 3 // 2
    )
    models = replica(settings)
    first = import_model(models)
    assert first.status_code == 201, first.text

    refused = import_model(models)
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    assert f"take {size:,} bytes of its quota of {size * 3 // 2:,}" in detail
    assert "TUNEFLEET_MAX_MODEL_BYTES_PER_TENANT" in detail and "DELETE /models/{id}" in detail
    assert len(models.get("/").json()) == 1

    assert models.delete(f"/{first.json()['id']}").status_code == 204
    assert import_model(models).status_code == 201
