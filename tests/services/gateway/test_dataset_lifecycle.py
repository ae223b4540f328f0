"""GET and DELETE /datasets and the per-tenant dataset quota, in process (no Serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from services.gateway.app import create_app
from shared.auth import KeyStore
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.settings import Settings

LOCAL = "http://127.0.0.1"


def csv(rows: int, seed: int = 0) -> bytes:
    """A small usable CSV; another ``seed`` makes another file (another dataset id)."""
    lines = [f"{i},{(i * 7 + seed) % 11},{i % 2}" for i in range(rows)]
    return ("a,b,target\n" + "\n".join(lines) + "\n").encode()


def upload(client: TestClient, content: bytes, key: str | None = None) -> Any:
    headers = {"content-type": "text/csv"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.post("/datasets", content=content, headers=headers)


def job_on(dataset_id: str) -> dict[str, Any]:
    return {"dataset": {"upload": dataset_id}, "search_space": {"epochs": 1}}


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_server.url, home=tmp_path)


@pytest.fixture
def gateway(settings: Settings) -> TestClient:
    return TestClient(create_app(settings), base_url=LOCAL)


def test_uploads_are_listed_and_a_deleted_one_is_gone(
    gateway: TestClient, settings: Settings
) -> None:
    first = upload(gateway, csv(40, seed=1))
    second = upload(gateway, csv(60, seed=2))
    assert first.status_code == 201 and second.status_code == 201, first.text
    first_id, second_id = first.json()["id"], second.json()["id"]

    listed = gateway.get("/datasets")
    assert listed.status_code == 200
    assert [d["id"] for d in listed.json()] == [second_id, first_id]  # most recent first
    assert listed.json()[0]["rows"] == 60 and listed.json()[0]["columns"] == ["a", "b"]

    assert gateway.get(f"/datasets/{first_id}").json() == listed.json()[1]
    assert gateway.delete(f"/datasets/{first_id}").status_code == 204
    assert gateway.get(f"/datasets/{first_id}").status_code == 404
    assert [d["id"] for d in gateway.get("/datasets").json()] == [second_id]
    assert not list(settings.datasets_dir.glob(f"{first_id}*"))
    assert gateway.post("/jobs", json=job_on(first_id)).status_code == 404
    again = gateway.delete(f"/datasets/{first_id}")
    assert again.status_code == 404
    assert again.json()["detail"] == (
        f"no dataset with id {first_id!r}; upload it with POST /datasets"
    )
    assert gateway.delete(f"/datasets/{'0' * 32}").status_code == 404
    assert gateway.delete("/datasets/..%2Fjobs").status_code in (404, 422)


def test_a_dataset_is_409_while_a_queued_or_running_job_uses_it(
    gateway: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    dataset_id = upload(gateway, csv(40)).json()["id"]
    other_id = upload(gateway, csv(40, seed=5)).json()["id"]
    queued = gateway.post("/jobs", json=job_on(dataset_id))
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["id"]

    refused = gateway.delete(f"/datasets/{dataset_id}")
    assert refused.status_code == 409
    assert job_id in refused.json()["detail"] and "queued" in refused.json()["detail"]
    # A dataset no active job names goes, whatever else is queued.
    assert gateway.delete(f"/datasets/{other_id}").status_code == 204

    jobs = JobStore(redis_client, settings.queue_policy())
    lease = jobs.claim("d1")
    assert lease is not None and lease.job_id == job_id
    running = gateway.delete(f"/datasets/{dataset_id}")
    assert running.status_code == 409 and "running" in running.json()["detail"]
    assert (settings.datasets_dir / f"{dataset_id}.csv").is_file()

    best = BestTrial(trial_id="t0", metric="val_accuracy", value=0.5, config={})
    jobs.succeed(lease, best, {"test_accuracy": 0.5})
    assert gateway.delete(f"/datasets/{dataset_id}").status_code == 204
    assert gateway.get("/datasets").json() == []
    # The ended job keeps its record.
    assert gateway.get(f"/jobs/{job_id}").json()["state"] == "succeeded"


def test_another_tenants_dataset_is_not_found(
    gateway: TestClient, redis_client: redis.Redis, settings: Settings
) -> None:
    keys = KeyStore(redis_client)
    alpha, beta = keys.create("alpha"), keys.create("beta")
    dataset_id = upload(gateway, csv(40), key=alpha).json()["id"]

    as_beta = {"Authorization": f"Bearer {beta}"}
    assert gateway.get("/datasets", headers=as_beta).json() == []
    assert gateway.delete(f"/datasets/{dataset_id}", headers=as_beta).status_code == 404
    as_alpha = {"Authorization": f"Bearer {alpha}"}
    assert [d["id"] for d in gateway.get("/datasets", headers=as_alpha).json()] == [dataset_id]
    assert gateway.delete(f"/datasets/{dataset_id}", headers=as_alpha).status_code == 204
    assert gateway.delete("/datasets/" + dataset_id).status_code == 401


def test_an_upload_past_the_tenant_quota_is_413_until_room_is_made(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    small, large = csv(40, seed=1), csv(400, seed=2)
    quota = len(large) + 100  # the large file alone fits; with the small one, not
    settings = Settings(
        redis_url=redis_server.url, home=tmp_path, max_dataset_bytes_per_tenant=quota
    )
    gateway = TestClient(create_app(settings), base_url=LOCAL)
    keys = KeyStore(redis_client)
    # The default tenant's folder holds the other tenants' folders: they do not count.
    default, beta = keys.create("default"), keys.create("beta")
    as_default = {"Authorization": f"Bearer {default}"}

    assert upload(gateway, large, key=beta).status_code == 201
    first = upload(gateway, small, key=default)
    assert first.status_code == 201, first.text
    refused = upload(gateway, large, key=default)
    assert refused.status_code == 413
    detail = refused.json()["detail"]
    # The uploads and their summaries count; their Parquet copies do not.
    used = sum(
        p.stat().st_size
        for p in settings.datasets_dir.iterdir()
        if p.is_file() and not p.name.endswith(".parquet")
    )
    assert f"take {used:,} bytes of its quota of {quota:,}" in detail
    assert f"needs {len(large):,} more" in detail
    assert "TUNEFLEET_MAX_DATASET_BYTES_PER_TENANT" in detail
    assert "DELETE /datasets/{id}" in detail
    assert len(gateway.get("/datasets", headers=as_default).json()) == 1
    # The same file again replaces itself: it needs no room.
    assert upload(gateway, small, key=default).status_code == 201

    assert gateway.delete(f"/datasets/{first.json()['id']}", headers=as_default).status_code == 204
    assert upload(gateway, large, key=default).status_code == 201


def test_an_upload_answers_column_types_and_the_problems_a_job_would_hit(
    gateway: TestClient,
) -> None:
    """What the dashboard's datasets page shows, as a browser uploads it (multipart)."""
    # 41 rows, one of them the only row of class "rare": too few for a stratified split.
    rows = [f"{i},{i * 0.5},{['x', 'y'][i % 2]}" for i in range(40)] + ["99,1.5,rare"]
    content = ("n,width,label\n" + "\n".join(rows) + "\n").encode()
    answer = gateway.post(
        "/datasets?target=label", files={"file": ("plants.csv", content, "text/csv")}
    )
    assert answer.status_code == 201, answer.text
    summary = answer.json()
    assert summary["column_types"] == {"n": "integer", "width": "float", "label": "text"}
    assert summary["class_counts"] == {"rare": 1, "x": 20, "y": 20}
    [problem] = summary["problems"]
    assert "'rare' (1 row)" in problem and "stratify" in problem
    listed = gateway.get("/datasets").json()
    assert [(d["id"], d["problems"]) for d in listed] == [(summary["id"], [problem])]

    fine = upload(gateway, csv(40, seed=3)).json()
    assert fine["problems"] == [] and fine["column_types"]["target"] == "integer"
