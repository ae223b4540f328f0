"""Batch scoring over HTTP on the stack: a table scored as a job, the output downloaded."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from tests.helpers.cli import tunefleet_output
from tests.helpers.stack import MAX_INSTANCES, Stack

pytestmark = pytest.mark.e2e

ROWS = 2 * MAX_INSTANCES + 37  # more than two requests of /predict take


def digits_table(rows: int, seed: int) -> pd.DataFrame:
    """Digits rows with their target, and a text column no model has heard of."""
    frame = load_digits(as_frame=True).frame.sample(rows, random_state=seed)
    frame = frame.reset_index(drop=True)
    frame.insert(0, "row_id", [f"row-{i}" for i in range(rows)])
    return frame


def upload(client: httpx.Client, frame: pd.DataFrame, **params: str) -> str:
    content = frame.to_csv(index=False).encode()
    answer = client.post(
        "/datasets", params=params, files={"file": ("rows.csv", content, "text/csv")}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def submit(stack: Stack, model: str, body: dict[str, Any]) -> httpx.Response:
    return stack.http.post(f"/models/{model}/batch", json=body)


def read_output(stack: Stack, job_id: str, output_format: str) -> pd.DataFrame:
    answer = stack.http.get(f"/jobs/{job_id}/output")
    assert answer.status_code == 200, answer.text
    reader = pd.read_csv if output_format == "csv" else pd.read_parquet
    return reader(io.BytesIO(answer.content))


def predicted(stack: Stack, model: str, frame: pd.DataFrame) -> dict[str, Any]:
    """What /predict answers for the frame's rows, request by request."""
    features = stack.http.get(f"/models/{model}").json()["feature_names"]
    labels: list[Any] = []
    probabilities: list[list[float]] = []
    for start in range(0, len(frame), MAX_INSTANCES):
        rows = frame[features].iloc[start : start + MAX_INSTANCES].to_dict(orient="records")
        answer = stack.http.post(f"/models/{model}/predict", json={"instances": rows}).json()
        labels += answer["predictions"]
        probabilities += answer["probabilities"]
    return {"labels": labels, "probabilities": np.array(probabilities)}


@pytest.mark.parametrize(("output_format", "purpose"), [("csv", "scoring"), ("parquet", None)])
def test_batch_output_is_what_predict_answers_row_by_row(
    stack: Stack, quick_job: dict[str, Any], output_format: str, purpose: str | None
) -> None:
    model = quick_job["id"]
    frame = digits_table(ROWS, seed=5 if output_format == "csv" else 6)
    if purpose is None:  # an upload to train on scores too (its text column dropped)
        frame = frame.drop(columns=["row_id"])
    dataset = upload(stack.http, frame, **({"purpose": purpose} if purpose else {}))
    answer = submit(stack, model, {"dataset": dataset, "format": output_format})
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    job_id = accepted["id"]
    assert accepted["status_url"] == f"/jobs/{job_id}"
    assert accepted["output_url"] == f"/jobs/{job_id}/output"
    # The newest jobs: the batch job is among them (the model's job may be long past).
    listed = {job["id"]: job for job in stack.http.get("/jobs").json()}
    assert listed[job_id]["kind"] == "batch"
    assert stack.http.get(f"/jobs/{model}").json()["kind"] == "tune"

    job = stack.wait_for(job_id)
    assert job["state"] == "succeeded", job.get("error")
    assert job["rows_done"] == job["rows_total"] == ROWS
    assert job["spec"]["model"] == model and job["spec"]["dataset"] == {"upload": dataset}

    output = read_output(stack, job_id, output_format)
    classes = stack.http.get(f"/models/{model}").json()["classes"]
    added = ["prediction", *(f"probability_{label}" for label in classes)]
    assert list(output.columns) == [*frame.columns, *added]
    # Every input column carried through in order, the target and the text column too.
    pd.testing.assert_frame_equal(output[frame.columns], frame, check_dtype=False)
    expected = predicted(stack, model, frame)
    assert output["prediction"].tolist() == expected["labels"]
    got = output[added[1:]].to_numpy()
    assert np.allclose(got, expected["probabilities"], atol=1e-6)


def test_cancel_a_running_batch_job_and_its_output_is_not_there(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    # Large enough that it is still scoring when the cancel comes.
    big = pd.concat([digits_table(len(load_digits().target), seed=7)] * 60, ignore_index=True)
    dataset = upload(stack.http, big, purpose="scoring")
    job_id = submit(stack, quick_job["id"], {"dataset": dataset}).json()["id"]
    while stack.http.get(f"/jobs/{job_id}").json()["state"] == "queued":
        time.sleep(0.2)
    cancelled = stack.http.delete(f"/jobs/{job_id}")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelling"
    job = stack.wait_for(job_id)
    assert job["state"] == "cancelled"
    answer = stack.http.get(f"/jobs/{job_id}/output")
    assert answer.status_code == 409 and "cancelled" in answer.json()["detail"]


def test_unknown_or_unusable_tables_are_refused_before_queueing(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    model = quick_job["id"]

    def newest() -> list[str]:  # the newest job's id: none was queued while it stays
        return [job["id"] for job in stack.http.get("/jobs", params={"limit": 1}).json()]

    before = newest()
    unknown = submit(stack, model, {"dataset": "0" * 32})
    assert unknown.status_code == 404 and "POST /datasets" in unknown.json()["detail"]
    malformed = submit(stack, model, {"dataset": "not-an-id"})
    assert malformed.status_code == 422
    bad_format = submit(stack, model, {"dataset": "0" * 32, "format": "xlsx"})
    assert bad_format.status_code == 422
    lacking = upload(
        stack.http, digits_table(20, seed=8).drop(columns=["pixel_0_3"]), purpose="scoring"
    )
    answer = submit(stack, model, {"dataset": lacking})
    assert answer.status_code == 422 and "pixel_0_3" in answer.json()["detail"]
    clashing = upload(stack.http, digits_table(20, seed=9).assign(prediction=1), purpose="scoring")
    answer = submit(stack, model, {"dataset": clashing})
    assert answer.status_code == 422 and "'prediction'" in answer.json()["detail"]
    # A tuning job on a table uploaded to be scored is refused too: it has no target.
    tune = stack.http.post("/jobs", json={"dataset": {"upload": lacking}})
    assert tune.status_code == 422 and "scored" in tune.json()["detail"]
    assert newest() == before


def test_a_tuning_job_has_no_output(stack: Stack, quick_job: dict[str, Any]) -> None:
    answer = stack.http.get(f"/jobs/{quick_job['id']}/output")
    assert answer.status_code == 404 and "trials" in answer.json()["detail"]
    assert stack.http.get(f"/jobs/{'0' * 32}/output").status_code == 404


def test_another_tenants_model_and_output_are_not_found(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    dataset = upload(stack.http, digits_table(30, seed=10), purpose="scoring")
    done = stack.wait_for(submit(stack, quick_job["id"], {"dataset": dataset}).json()["id"])
    key = tunefleet_output(stack, "keys", "create", "outsider")
    try:
        with httpx.Client(
            base_url=stack.url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        ) as outsider:
            own = upload(outsider, digits_table(30, seed=10), purpose="scoring")
            answer = outsider.post(f"/models/{quick_job['id']}/batch", json={"dataset": own})
            assert answer.status_code == 404, answer.text
            assert outsider.get(f"/jobs/{done['id']}/output").status_code == 404
    finally:
        tunefleet_output(stack, "keys", "revoke", key)
