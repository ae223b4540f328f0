"""The gateway's edge in process (no Serve): body limits without a Content-Length, what
a stack without API keys refuses, and what /healthz tells whom."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from services.gateway.app import create_app
from shared.auth import KeyStore
from shared.jobs import JobStore
from shared.settings import Settings

# TestClient's own default, "testserver", is not a loopback name: a stack without keys
# refuses it as it refuses any name but its own.
LOCAL = "http://127.0.0.1"
CSV = b"a,b,target\n" + b"".join(b"%d,%d,%d\n" % (i, i % 7, i % 2) for i in range(40))


def chunks(total_bytes: int) -> Iterator[bytes]:
    for _ in range(total_bytes // 100):
        yield b"x" * 100


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_server.url, home=tmp_path, http_port=8123)


def test_a_chunked_body_over_the_limit_is_413(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # redis_client: an emptied Redis, without the API keys another test may have left.
    settings = Settings(
        redis_url=redis_server.url, home=tmp_path, max_body_bytes=1_000, max_upload_bytes=5_000
    )
    client = TestClient(create_app(settings), base_url=LOCAL)
    json_body = client.post(
        "/jobs", content=chunks(2_000), headers={"content-type": "application/json"}
    )
    assert json_body.status_code == 413 and "at most 1000" in json_body.json()["detail"]
    upload = client.post("/datasets", content=chunks(10_000), headers={"content-type": "text/csv"})
    assert upload.status_code == 413 and "at most 5000" in upload.json()["detail"]
    # Under the limits, the same way in, the body is read as usual.
    small = client.post("/datasets", content=chunks(1_000), headers={"content-type": "text/csv"})
    assert small.status_code == 422  # one column of x: read, then refused for its content


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:8123", "localhost:8123", "LOCALHOST", "[::1]:8123"]
)
def test_without_keys_loopback_names_are_answered(settings: Settings, host: str) -> None:
    client = TestClient(create_app(settings), base_url=f"http://{host}")
    assert client.get("/jobs").status_code == 200
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("host", ["rebound.example.com", "rebound.example.com:8123", "10.1.2.3"])
def test_without_keys_another_host_name_is_421_saying_what_to_use(
    settings: Settings, redis_client: redis.Redis, host: str
) -> None:
    client = TestClient(create_app(settings), base_url=f"http://{host}")
    for answer in (client.get("/jobs"), client.get("/healthz"), client.get("/")):
        assert answer.status_code == 421
        detail = answer.json()["detail"]
        assert "http://127.0.0.1:8123" in detail and "create an API key" in detail
    # With keys, requests need a key instead, whatever name they use.
    key = KeyStore(redis_client).create("team-a")
    authorized = {"Authorization": f"Bearer {key}"}
    assert client.get("/jobs", headers=authorized).status_code == 200
    assert client.get("/jobs").status_code == 401


def test_without_keys_a_post_from_another_site_is_403(
    settings: Settings, redis_client: redis.Redis
) -> None:
    client = TestClient(create_app(settings), base_url=LOCAL)
    upload = {"file": ("data.csv", CSV, "text/csv")}
    for origin in ("https://evil.example", "null"):
        answer = client.post("/datasets", headers={"Origin": origin}, files=upload)
        assert answer.status_code == 403
        assert "another site" in answer.json()["detail"]
        # Reading is left to the browser's same-origin rule.
        assert client.get("/jobs", headers={"Origin": origin}).status_code == 200
    # The dashboard's own page posts with its own (loopback) origin; the CLI sends none.
    for origin in ("http://127.0.0.1:8123", "http://localhost:8123"):
        answer = client.post("/datasets", headers={"Origin": origin}, files=upload)
        assert answer.status_code == 201, answer.text
    assert client.post("/datasets", files=upload).status_code == 201


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "text/plain; charset=utf-8"]
)
def test_datasets_refuse_what_a_plain_html_form_can_send(
    settings: Settings, content_type: str
) -> None:
    client = TestClient(create_app(settings), base_url=LOCAL)
    answer = client.post("/datasets", content=CSV, headers={"content-type": content_type})
    assert answer.status_code == 415
    detail = answer.json()["detail"]
    assert "text/csv" in detail and "multipart/form-data" in detail
    assert content_type.partition(";")[0] in detail


def test_datasets_take_text_csv_and_multipart(settings: Settings) -> None:
    client = TestClient(create_app(settings), base_url=LOCAL)
    raw = client.post("/datasets", content=CSV, headers={"content-type": "text/csv; charset=utf-8"})
    form = client.post("/datasets", files={"file": ("data.csv", CSV, "text/csv")})
    assert raw.status_code == form.status_code == 201
    assert raw.json()["id"] == form.json()["id"]


def test_healthz_shows_driver_ids_to_admins_only(
    settings: Settings, redis_client: redis.Redis
) -> None:
    JobStore(redis_client).drivers.heartbeat("node-a-1234-abcd")
    client = TestClient(create_app(settings), base_url=LOCAL)
    # No keys: the stack answers on this machine only, and everyone is its admin.
    open_stack = client.get("/healthz").json()
    assert open_stack["live_drivers"] == 1 and open_stack["drivers"] == ["node-a-1234-abcd"]
    keys = KeyStore(redis_client)
    tenant, admin = keys.create("team-a"), keys.create("ops", admin=True)
    for headers in ({}, {"Authorization": f"Bearer {tenant}"}):
        health = client.get("/healthz", headers=headers)
        assert health.status_code == 200  # a probe needs no key
        assert health.json()["live_drivers"] == 1 and health.json()["drivers"] is None
        assert "node-a" not in health.text and "1234" not in health.text
    as_admin = client.get("/healthz", headers={"Authorization": f"Bearer {admin}"}).json()
    assert as_admin["drivers"] == ["node-a-1234-abcd"]
    unknown = client.get("/healthz", headers={"Authorization": "Bearer tfk_nope"})
    assert unknown.status_code == 401


def test_a_job_shows_its_driver_to_admins_only(
    settings: Settings, redis_client: redis.Redis
) -> None:
    keys = KeyStore(redis_client)
    tenant, admin = keys.create("team-a"), keys.create("ops", admin=True)
    client = TestClient(create_app(settings), base_url=LOCAL)
    as_tenant = {"Authorization": f"Bearer {tenant}"}
    spec = {"dataset": {"builtin": "iris"}}
    job_id = client.post("/jobs", json=spec, headers=as_tenant).json()["id"]
    assert JobStore(redis_client).claim("node-a-1234-abcd") is not None
    for view in (
        client.get(f"/jobs/{job_id}", headers=as_tenant),
        client.get("/jobs", headers=as_tenant),
        client.delete(f"/jobs/{job_id}", headers=as_tenant),
    ):
        assert view.status_code in (200, 202)
        assert "node-a" not in view.text and "1234" not in view.text
    as_admin = client.get(f"/jobs/{job_id}", headers={"Authorization": f"Bearer {admin}"})
    assert as_admin.json()["driver"] == "node-a-1234-abcd"


def test_trial_and_epoch_limits_are_the_settings_alone(settings: Settings) -> None:
    big = {
        "dataset": {"builtin": "iris"},
        "search": {"algorithm": "random", "num_samples": 15_000},
        "search_space": {"lr": {"loguniform": [0.001, 0.1]}, "epochs": 2_000},
    }
    default = TestClient(create_app(settings), base_url=LOCAL)
    refused = default.post("/jobs", json=big)
    assert refused.status_code == 422 and "TUNEFLEET_MAX_TRIALS" in refused.text
    refused = default.post("/jobs", json={**big, "search": {"num_samples": 10}})
    assert refused.status_code == 422 and "TUNEFLEET_MAX_EPOCHS" in refused.text
    # Raised past the defaults, the limits are what the settings say: nothing lower.
    raised = settings.model_copy(update={"max_trials": 20_000, "max_epochs": 5_000})
    accepted = TestClient(create_app(raised), base_url=LOCAL).post("/jobs", json=big)
    assert accepted.status_code == 202, accepted.text


def test_every_not_found_says_where_to_look(settings: Settings) -> None:
    """The domain's errors name the missing thing; the edge adds the route that lists or
    makes such things, per subject."""
    from tests.helpers.models import replica

    gateway = TestClient(create_app(settings), base_url=LOCAL)
    models = replica(settings)
    job_id, dataset_id = "a" * 32, "b" * 32
    answers = {
        gateway.get(f"/jobs/{job_id}"): f"no job with id {job_id!r}; GET /jobs lists the jobs",
        gateway.get(f"/datasets/{dataset_id}"): (
            f"no dataset with id {dataset_id!r}; upload it with POST /datasets"
        ),
        models.get(f"/{job_id}"): f"no model with id {job_id!r}; GET /models lists the models",
        models.post("/prod/predict", json={"instances": [[0.5]]}): (
            "no alias 'prod'; GET /models/aliases lists them"
        ),
    }
    for answer, detail in answers.items():
        assert (answer.status_code, answer.json()["detail"]) == (404, detail)
    spec = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}}
    queued = gateway.post("/jobs", json=spec).json()["id"]
    trial = gateway.get(f"/jobs/{queued}/trials/t1/history")
    assert trial.status_code == 404
    assert trial.json()["detail"] == (
        f"job {queued} has no trial 't1'; GET /jobs/{queued}/trials lists them"
    )


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        # As Python's json.dumps writes a float that is not finite, and a number too large.
        ('{"search_space": {"lr": NaN}}', "search_space.lr: NaN is not a finite number"),
        (
            '{"search_space": {"lr": {"grid": [0.1, Infinity]}}}',
            "search_space.lr.grid[1]: Infinity",
        ),
        ('{"search_space": {"dropout": {"uniform": [-Infinity, 0.5]}}}', "uniform[0]: -Infinity"),
        ('{"scheduler": {"type": "asha", "grace_period": 1e999}}', "grace_period: 1e999"),
        ('{"search_space": {"lr": {"quniform": [0.001, 0.1, 1e-320]}}}', "use a q of at least"),
        ('{"search_space": {"lr": {"quniform": [0.001, 0.1, 1e400]}}}', "quniform[2]: 1e400"),
    ],
)
def test_a_number_that_is_not_finite_is_422_naming_the_field(
    settings: Settings, redis_client: redis.Redis, body: str, detail: str
) -> None:
    client = TestClient(create_app(settings), base_url=LOCAL)
    spec = body[:-1] + ', "dataset": {"builtin": "iris"}}'
    answer = client.post("/jobs", content=spec, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert detail in str(answer.json()["detail"])
    assert JobStore(redis_client).recent() == []  # nothing queued
