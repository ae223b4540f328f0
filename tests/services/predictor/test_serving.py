"""Serving through the gateway: aliases, promotion, multiplexing, limits, hot swaps."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx
import numpy as np
import pytest

from shared.model import ModelBundle
from tests.helpers.stack import MAX_INSTANCES, Stack, digits_rows

pytestmark = pytest.mark.e2e

ROWS = digits_rows(20, seed=11)


@pytest.fixture(scope="module")
def second_model(stack: Stack) -> dict[str, Any]:
    """Another digits model, different from the quick example's."""
    spec = {
        "name": "digits-small",
        "dataset": {"builtin": "digits"},
        "search_space": {"lr": 0.01, "hidden_units": 16, "epochs": 3},
    }
    job = stack.wait_for(stack.http.post("/jobs", json=spec).json()["id"])
    assert job["state"] == "succeeded", job.get("error")
    return job


def offline(stack: Stack, model_id: str, rows: list[dict[str, float]]) -> list[Any]:
    record = stack.http.get(f"/models/{model_id}").json()
    bundle = ModelBundle.load(record["checkpoint_uri"])
    matrix = np.array([[row[name] for name in bundle.feature_names] for row in rows])
    return bundle.predict(matrix)[0]


def predict(client: httpx.Client, ref: str, rows: list[dict[str, float]]) -> httpx.Response:
    return client.post(f"/models/{ref}/predict", json={"instances": rows})


def test_one_replica_serves_two_models_alternately(
    stack: Stack, quick_job: dict[str, Any], second_model: dict[str, Any]
) -> None:
    expected = {job["id"]: offline(stack, job["id"], ROWS) for job in (quick_job, second_model)}
    logged_before = len(stack.log_tail(chars=10**9))
    for _ in range(4):
        for model_id, labels in expected.items():
            answer = predict(stack.http, model_id, ROWS).json()
            assert answer["model"]["id"] == model_id and answer["predictions"] == labels
    # The one replica kept both models loaded: eight alternating requests loaded each
    # at most once (a replica holding one model at a time would load each four times).
    # Replica logs reach the stack's log shortly after they are written.
    time.sleep(3)
    pattern = r"pid=(\d+)\).*loaded model ([0-9a-f]{32}) into this replica"
    log = stack.log_tail(chars=10**9)
    ever = {loaded for _, loaded in re.findall(pattern, log)}
    assert set(expected) <= ever, "the replica's log says when it loads a model"
    loads = re.findall(pattern, log[logged_before:])
    for model_id in expected:
        assert len([pid for pid, loaded in loads if loaded == model_id]) <= 1, loads
    assert len({pid for pid, _ in loads}) <= 1, loads


def test_alias_promotion_over_http(
    stack: Stack, quick_job: dict[str, Any], second_model: dict[str, Any]
) -> None:
    first, second = quick_job["id"], second_model["id"]
    assert stack.http.put("/models/aliases/staging", json={"model_id": first}).status_code == 200
    assert predict(stack.http, "staging", ROWS).json()["model"]["id"] == first
    stack.http.put("/models/aliases/staging", json={"model_id": second})
    assert predict(stack.http, "staging", ROWS).json()["model"]["id"] == second
    assert stack.http.get("/models/aliases").json()["staging"] == second

    assert stack.http.delete("/models/aliases/staging").status_code == 204
    gone = predict(stack.http, "staging", ROWS)
    assert gone.status_code == 404 and "no alias 'staging'" in gone.json()["detail"]
    unknown = stack.http.put("/models/aliases/staging", json={"model_id": "d" * 32})
    assert unknown.status_code == 404
    bad_name = stack.http.put("/models/aliases/Not_Valid", json={"model_id": first})
    assert bad_name.status_code == 422


def test_job_promotes_its_model_only_when_it_tests_better(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    stack.http.put("/models/aliases/champion", json={"model_id": quick_job["id"]})
    weak = {
        "dataset": {"builtin": "digits"},
        "search_space": {"lr": 0.00001, "hidden_units": 4, "epochs": 1},
        "promote": "champion",
    }
    job = stack.wait_for(stack.http.post("/jobs", json=weak).json()["id"])
    assert job["state"] == "succeeded"
    assert job["test_metrics"]["test_accuracy"] < quick_job["test_metrics"]["test_accuracy"]
    assert stack.http.get("/models/aliases").json()["champion"] == quick_job["id"]

    fresh = stack.wait_for(
        stack.http.post("/jobs", json={**weak, "promote": "newcomer"}).json()["id"]
    )
    assert stack.http.get("/models/aliases").json()["newcomer"] == fresh["id"]


def test_too_many_instances_is_413_infinity_422_and_nan_a_gap(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    many = predict(stack.http, quick_job["id"], digits_rows(MAX_INSTANCES + 1))
    assert many.status_code == 413 and f"at most {MAX_INSTANCES}" in many.json()["detail"]
    row = ", ".join(["0"] * 63)

    def send(last: str) -> httpx.Response:
        return stack.http.post(
            f"/models/{quick_job['id']}/predict",
            content=f'{{"instances": [[{row}, {last}]]}}',
            headers={"content-type": "application/json"},
        )

    infinite = send("Infinity")
    assert infinite.status_code == 422
    assert "instance 0, column 'pixel_7_7': inf is not a finite number" in infinite.json()["detail"]
    # NaN, which JSON does not have, reads as pandas reads it: a gap, like null.
    nan, null = send("NaN"), send("null")
    assert nan.status_code == null.status_code == 200, nan.text
    assert nan.json()["predictions"] == null.json()["predictions"]


def test_no_request_fails_while_an_alias_swaps_under_load(
    stack: Stack, quick_job: dict[str, Any], second_model: dict[str, Any]
) -> None:
    models = [quick_job["id"], second_model["id"]]
    expected = {model_id: offline(stack, model_id, ROWS) for model_id in models}
    stack.http.put("/models/aliases/live", json={"model_id": models[0]})
    stop = threading.Event()
    failures: list[str] = []
    answered: list[str] = []

    def client_loop() -> None:
        with httpx.Client(base_url=stack.url, timeout=30) as client:
            while not stop.is_set():
                answer = predict(client, "live", ROWS)
                if answer.status_code != 200:
                    failures.append(f"{answer.status_code}: {answer.text}")
                    continue
                body = answer.json()
                answered.append(body["model"]["id"])
                if body["predictions"] != expected[body["model"]["id"]]:
                    failures.append(f"wrong predictions from {body['model']['id']}")

    clients = [threading.Thread(target=client_loop) for _ in range(8)]
    for thread in clients:
        thread.start()
    for swap in range(10):
        time.sleep(0.4)
        stack.http.put("/models/aliases/live", json={"model_id": models[(swap + 1) % 2]})
    time.sleep(0.5)
    stop.set()
    for thread in clients:
        thread.join()
    assert failures == []
    assert len(answered) > 50 and set(answered) == set(models)
