"""The whole path through HTTP, as a user goes it: submit, follow, read trials, predict."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.model import ModelBundle
from tests.helpers.stack import Stack, digits_rows

pytestmark = pytest.mark.e2e


def test_gateway_and_predictor_serve_health_and_api_docs(stack: Stack) -> None:
    health = stack.http.get("/healthz").json()
    assert health["status"] == "ok"
    assert stack.http.get("/docs").status_code == 200
    paths = stack.http.get("/openapi.json").json()["paths"]
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/trials", "/datasets"} <= set(paths)
    # The predictor is its own Serve application at /models, with its own docs.
    assert stack.http.get("/models/docs").status_code == 200
    schema = stack.http.get("/models/openapi.json").json()
    assert schema["servers"] == [{"url": "/models"}]
    assert {"/", "/{model_ref}/predict", "/aliases/{name}"} <= set(schema["paths"])
    # /models itself answers the list, with no redirect.
    assert stack.http.get("/models").status_code == 200


def test_invalid_spec_gets_422_naming_field_and_reason(stack: Stack) -> None:
    before = len(stack.http.get("/jobs").json())
    answer = stack.http.post(
        "/jobs", json={"dataset": {"builtin": "iris"}, "search_space": {"dropout": {"grid": [2]}}}
    )
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"][:3] == ["body", "search_space", "dropout"]
    assert "less than 1" in error["msg"]
    assert len(stack.http.get("/jobs").json()) == before  # nothing was queued


@pytest.mark.parametrize(
    ("spec", "where", "words"),
    [
        (
            {"search_space": {"lr": {"loguniform": [0, 0.1]}}},
            ["body", "search_space", "lr", "loguniform"],
            "greater than 0",
        ),
        (
            {"search_space": {"epochs": 3}, "scheduler": {"type": "asha", "grace_period": 5}},
            ["body"],
            "scheduler.grace_period (5)",
        ),
        ({"search": "annealing"}, ["body", "search", "algorithm"], "'grid', 'random' or 'optuna'"),
    ],
)
def test_engine_options_are_validated_at_submit(
    stack: Stack, spec: dict, where: list, words: str
) -> None:
    answer = stack.http.post("/jobs", json={"dataset": {"builtin": "iris"}, **spec})
    assert answer.status_code == 422
    (error,) = answer.json()["detail"]
    assert error["loc"][: len(where)] == where and words in error["msg"]


def test_quick_example_tunes_and_reports_every_trial(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    assert quick_job["state"] == "succeeded", quick_job.get("error")
    assert quick_job["trials_total"] == quick_job["trials_done"] == 4
    trials = stack.http.get(f"/jobs/{quick_job['id']}/trials").json()
    assert len(trials) == 4
    assert {(t["config"]["lr"], t["config"]["hidden_units"]) for t in trials} == {
        (0.001, 64), (0.001, 128), (0.003, 64), (0.003, 128),
    }  # fmt: skip
    assert all(t["state"] == "TERMINATED" and t["iterations"] == 8 for t in trials)
    best = quick_job["best"]
    assert best["metric"] == "val_accuracy"
    # The best value is the best epoch of any trial, so no trial ended above it.
    assert best["value"] >= max(t["metrics"]["val_accuracy"] for t in trials)
    assert quick_job["test_metrics"]["test_accuracy"] >= 0.9

    csv = stack.http.get(f"/jobs/{quick_job['id']}/trials", params={"format": "csv"}).text
    header, *lines = csv.strip().splitlines()
    assert "config/lr" in header and "metrics/val_accuracy" in header and len(lines) == 4


def test_served_predictions_equal_the_checkpoint_offline(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    rows = digits_rows(50)
    answer = stack.http.post(f"/models/{quick_job['id']}/predict", json={"instances": rows})
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert served["model"]["job_id"] == quick_job["id"]

    model = stack.http.get(f"/models/{quick_job['id']}").json()
    bundle = ModelBundle.load(model["checkpoint_uri"])
    matrix = np.array([[row[name] for name in bundle.feature_names] for row in rows])
    labels, probabilities = bundle.predict(matrix)
    assert served["predictions"] == labels
    assert np.allclose(served["probabilities"], probabilities, atol=1e-6)
    assert set(labels) <= set(range(10))

    # Lists in feature order give the same answer as objects by name.
    as_lists = stack.http.post(
        f"/models/{quick_job['id']}/predict", json={"instances": matrix.tolist()}
    ).json()
    assert as_lists["predictions"] == labels


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda row: row.pop("pixel_3_4"), "missing columns 'pixel_3_4'"),
        (lambda row: row.update(colour=1.0), "unknown columns 'colour'"),
        (
            lambda row: row.update(pixel_0_1="bright"),
            "column 'pixel_0_1': 'bright' is not a finite number",
        ),
    ],
)
def test_predict_with_bad_features_gets_422_saying_which(
    stack: Stack, quick_job: dict[str, Any], mutate: Any, words: str
) -> None:
    rows = digits_rows(3)
    mutate(rows[2])
    answer = stack.http.post(f"/models/{quick_job['id']}/predict", json={"instances": rows})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("instance 2")
    assert words in answer.json()["detail"]

    short = stack.http.post(f"/models/{quick_job['id']}/predict", json={"instances": [[1, 2, 3]]})
    assert short.status_code == 422 and "takes 64 columns" in short.json()["detail"]


def test_unknown_model_is_404(stack: Stack) -> None:
    answer = stack.http.post(f"/models/{'0' * 32}/predict", json={"instances": [[1.0]]})
    assert answer.status_code == 404 and "no model" in answer.json()["detail"]
    assert stack.http.get("/jobs/not-a-job-id").status_code == 422
    assert stack.http.get(f"/jobs/{'0' * 32}").status_code == 404


def test_failing_job_says_why_and_the_driver_goes_on(stack: Stack) -> None:
    rows = ["width,height,kind"] + [f"{i % 13},{(i * 7) % 11},{i % 2}" for i in range(120)]
    upload = stack.http.post(
        "/datasets",
        params={"target": "kind"},
        files={"file": ("shapes.csv", "\n".join(rows) + "\n", "text/csv")},
    )
    assert upload.status_code == 201, upload.text
    summary = upload.json()
    assert summary["rows"] == 120 and summary["columns"] == ["width", "height"]
    assert summary["target"] == "kind" and summary["classes"] == [0, 1]

    small = {"lr": 0.01, "hidden_units": 8, "epochs": 2}
    broken = stack.http.post(
        "/jobs",
        json={"dataset": {"upload": summary["id"], "target": "shape"}, "search_space": small},
    ).json()
    good = stack.http.post(
        "/jobs", json={"dataset": {"upload": summary["id"]}, "search_space": small}
    ).json()

    failed = stack.wait_for(broken["id"])
    assert failed["state"] == "failed"
    assert "target column 'shape' is not in the dataset" in failed["error"]
    assert stack.wait_for(good["id"])["state"] == "succeeded"

    conflict = stack.http.post(f"/models/{broken['id']}/predict", json={"instances": [[1, 2]]})
    assert conflict.status_code == 409
    assert "failed and has no model" in conflict.json()["detail"]


def test_unknown_upload_is_refused_at_submit(stack: Stack) -> None:
    answer = stack.http.post("/jobs", json={"dataset": {"upload": "ab" * 16}})
    assert answer.status_code == 404 and "POST /datasets" in answer.json()["detail"]


def test_raw_csv_body_upload_and_bad_csv(stack: Stack) -> None:
    body = "a,b,target\n" + "".join(f"{i},{i * 2},{i % 3}\n" for i in range(30))
    answer = stack.http.post("/datasets", content=body, headers={"content-type": "text/csv"})
    assert answer.status_code == 201 and answer.json()["classes"] == [0, 1, 2]
    bad = stack.http.post("/datasets", content="a,b\nx,1\n", headers={"content-type": "text/csv"})
    assert bad.status_code == 422 and "target column 'target'" in bad.json()["detail"]
