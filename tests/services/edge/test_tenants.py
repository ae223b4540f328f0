"""API keys and tenants, limits and hostile input at the edge, over HTTP."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.cli import tunefleet_output
from tests.helpers.stack import MAX_EPOCHS, MAX_TRIALS, Stack, digits_rows

pytestmark = pytest.mark.e2e

TINY = {
    "dataset": {"builtin": "digits"},
    "search_space": {"lr": 0.003, "hidden_units": 32, "epochs": 2},
}


class Tenants:
    def __init__(self, stack: Stack, keys: dict[str, str]) -> None:
        self.keys = keys
        self.clients = {
            name: httpx.Client(
                base_url=stack.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
            )
            for name, key in keys.items()
        }

    def __getitem__(self, name: str) -> httpx.Client:
        return self.clients[name]


@pytest.fixture(scope="module")
def tenants(stack: Stack) -> Iterator[Tenants]:
    """Keys of tenants alpha and beta and an admin, made with the CLI; revoked after,
    which turns auth off again for the other tests."""
    keys = {
        "alpha": tunefleet_output(stack, "keys", "create", "alpha"),
        "beta": tunefleet_output(stack, "keys", "create", "beta"),
        "admin": tunefleet_output(stack, "keys", "create", "ops", "--admin"),
    }
    made = Tenants(stack, keys)
    try:
        yield made
    finally:
        for key in keys.values():
            tunefleet_output(stack, "keys", "revoke", key)
        for client in made.clients.values():
            client.close()


@pytest.fixture(scope="module")
def alpha_job(stack: Stack, tenants: Tenants) -> dict[str, Any]:
    answer = tenants["alpha"].post("/jobs", json=TINY)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    for _ in range(300):
        job = tenants["alpha"].get(f"/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            assert job["state"] == "succeeded", job.get("error")
            return dict(job)
        subprocess.run(["sleep", "1"])
    raise AssertionError("alpha's job did not end")


def test_keys_are_shown_once_and_needed_for_everything_but_health(
    stack: Stack, tenants: Tenants
) -> None:
    assert all(key.startswith("tfk_") for key in tenants.keys.values())
    for path in ("/jobs", "/models", "/models/aliases"):
        answer = stack.http.get(path)
        assert answer.status_code == 401, path
        assert answer.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in answer.json()["detail"]
    wrong = stack.http.get("/jobs", headers={"Authorization": "Bearer tfk_nope"})
    assert wrong.status_code == 401 and "unknown API key" in wrong.json()["detail"]
    assert stack.http.get("/healthz").status_code == 200


def test_a_tenant_sees_only_its_own_jobs_and_datasets(
    tenants: Tenants, alpha_job: dict[str, Any]
) -> None:
    alpha, beta, admin = tenants["alpha"], tenants["beta"], tenants["admin"]
    job_id = alpha_job["id"]
    assert alpha_job["tenant"] == "alpha"
    # Another tenant's job is not found (404, never 403: ids do not leak).
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/trials", f"/jobs/{job_id}/events"):
        assert beta.get(path).status_code == 404, path
    assert beta.delete(f"/jobs/{job_id}").status_code == 404
    assert job_id not in {job["id"] for job in beta.get("/jobs").json()}
    assert job_id in {job["id"] for job in alpha.get("/jobs").json()}
    assert job_id in {job["id"] for job in admin.get("/jobs").json()}
    assert admin.get(f"/jobs/{job_id}").status_code == 200

    csv = "a,b,target\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(40))
    dataset = alpha.post("/datasets", content=csv, headers={"content-type": "text/csv"})
    assert dataset.status_code == 201, dataset.text
    spec = {"dataset": {"upload": dataset.json()["id"]}, "search_space": {"epochs": 1}}
    assert beta.post("/jobs", json=spec).status_code == 404
    queued = alpha.post("/jobs", json=spec)
    assert queued.status_code == 202
    alpha.delete(f"/jobs/{queued.json()['id']}")


def test_a_tenant_predicts_only_with_its_own_models_and_aliases(
    tenants: Tenants, alpha_job: dict[str, Any]
) -> None:
    alpha, beta, admin = tenants["alpha"], tenants["beta"], tenants["admin"]
    model_id = alpha_job["id"]
    body = {"instances": digits_rows(2)}
    assert alpha.post(f"/models/{model_id}/predict", json=body).status_code == 200
    assert beta.post(f"/models/{model_id}/predict", json=body).status_code == 404
    assert beta.get(f"/models/{model_id}").status_code == 404
    assert model_id not in {m["id"] for m in beta.get("/models").json()}
    assert model_id in {m["id"] for m in admin.get("/models").json()}

    assert alpha.put("/models/aliases/prod", json={"model_id": model_id}).status_code == 200
    assert alpha.get("/models/aliases").json() == {"prod": model_id}
    assert beta.get("/models/aliases").json() == {}
    assert beta.post("/models/prod/predict", json=body).status_code == 404
    assert beta.put("/models/aliases/prod", json={"model_id": model_id}).status_code == 404
    assert alpha.post("/models/prod/predict", json=body).status_code == 200
    assert alpha.delete("/models/aliases/prod").status_code == 204


def test_limits_answer_with_the_limit_named(tenants: Tenants) -> None:
    alpha = tenants["alpha"]
    grid = {"grid": [0.001 * (i + 1) for i in range(MAX_TRIALS + 1)]}
    too_many = alpha.post("/jobs", json={**TINY, "search_space": {"lr": grid}})
    assert too_many.status_code == 422 and "TUNEFLEET_MAX_TRIALS" in too_many.text
    too_long = alpha.post("/jobs", json={**TINY, "search_space": {"epochs": MAX_EPOCHS + 1}})
    assert too_long.status_code == 422 and "TUNEFLEET_MAX_EPOCHS" in too_long.text

    huge = {"instances": [[0.0] * 64] * 20_000}  # some 2.5 MB of JSON: over the body limit
    answer = alpha.post("/jobs", json=huge)
    assert answer.status_code == 413 and "at most" in answer.json()["detail"]
    answer = alpha.post(f"/models/{'0' * 32}/predict", json=huge)
    assert answer.status_code == 413


JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
CSV = {"content-type": "text/csv"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/jobs", {"content": b"{not json", "headers": JSON}),
        ("post", "/jobs", {"content": b"dataset=iris", "headers": TEXT}),
        ("post", "/jobs", {"json": {**TINY, "unknown_field": 1}}),
        ("post", "/jobs", {"json": {**TINY, "dataset": {"upload": "../../etc/passwd"}}}),
        ("get", "/jobs/..%2F..%2Fetc%2Fpasswd", {}),
        ("get", f"/jobs/{'0' * 32}/trials/..%2F..%2Fx/history", {}),
        ("get", "/models/..%2F..%2Fetc/predict", {}),
        ("post", "/models/import", {"files": {"checkpoint": ("model.pt", b"\x80\x04K\x01.")},
                                    "data": {"meta": '{"validation_value": 1}'}}),
        ("post", "/datasets", {"content": b"\x00\x01\x02binary", "headers": CSV}),
    ],
)  # fmt: skip
def test_hostile_input_is_a_4xx_never_a_5xx(
    tenants: Tenants, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    answer = getattr(tenants["alpha"], method)(path, **kwargs)
    assert 400 <= answer.status_code < 500 and answer.status_code != 401, (
        answer.status_code,
        answer.text,
    )
