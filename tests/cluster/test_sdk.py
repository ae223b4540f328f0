"""The Python SDK against the running stack: the blog's workflow with DataFrames, and
errors raised as types that carry the API's message."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sklearn.datasets import load_iris

from cluster import Client
from cluster.client import Conflict, Invalid, NotFound, Unreachable
from tests.helpers.stack import EXAMPLES, Stack, digits_rows

pytestmark = pytest.mark.e2e


def test_the_seed_workflow_with_dataframes(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    client = Client(stack.url)
    job = client.job(quick_job["id"])
    assert job.state == "succeeded"
    table = job.trials()
    assert len(table) == 4 and {"config/lr", "config/hidden_units"} <= set(table.columns)
    # Best first, and its row is the job's best trial.
    assert table["trial_id"].iloc[0] == job.best["trial_id"]  # type: ignore[index]
    assert table["best_metrics/val_accuracy"].is_monotonic_decreasing
    assert job.best["config"]["lr"] == table["config/lr"].iloc[0]  # type: ignore[index]
    history = job.history(table["trial_id"].iloc[0])
    assert list(history["training_iteration"]) == list(range(1, 9))

    rows = pd.DataFrame(digits_rows(5))
    predicted = client.predict(job.id, rows)
    assert list(predicted.index) == list(rows.index) and len(predicted) == 5
    probabilities = predicted[[f"probability/{label}" for label in range(10)]]
    assert probabilities.sum(axis=1).round(4).eq(1.0).all()
    assert (probabilities.idxmax(axis=1).str.removeprefix("probability/").astype(int)
            == predicted["prediction"]).all()  # fmt: skip
    assert job.id in set(client.models()["id"])
    assert job.id in set(client.jobs()["id"])

    # The model leaves as an MLflow model folder, or as a file (what its suffix says).
    folder = client.export(job.id, "mlflow", tmp_path / "model")
    assert (folder / "MLmodel").is_file()
    onnx = client.export(job.id, "onnx", tmp_path / "model.onnx")
    assert onnx.stat().st_size > 1000
    with pytest.raises(ValueError, match="torchscript, onnx, mlflow"):
        client.export(job.id, "pickle", tmp_path / "model.pkl")


def test_a_job_continued_from_the_sdk(stack: Stack, quick_job: dict[str, Any]) -> None:
    client = Client(stack.url)
    job = client.job(quick_job["id"])
    with pytest.raises(Invalid, match="ask for more"):
        job.continue_(epochs=5)  # the quick job's trials ran 8 epochs
    more = job.continue_(epochs=10, top=2).wait()
    assert more.state == "succeeded", more.view.get("error")
    table = more.trials()
    assert len(table) == 2 and set(table["iterations"]) == {10}
    best_two = job.trials()["trial_id"].iloc[:2]
    assert set(table["config/continues"]) == set(best_two)
    assert more.id in set(client.models()["id"])  # it has a model of its own


def test_submit_upload_and_wait(stack: Stack) -> None:
    client = Client(stack.url)
    frame = load_iris(as_frame=True).frame
    dataset = client.upload(frame, target="target")
    assert dataset["rows"] == 150
    progress = io.StringIO()
    job = client.submit(
        {
            "dataset": {"upload": dataset["id"]},
            "search_space": {"lr": {"grid": [0.01, 0.05]}, "epochs": 3},
        }
    ).wait(progress=True, out=progress)
    assert job.state == "succeeded"
    assert "2/2 trials" in progress.getvalue().splitlines()[-1]
    assert len(job.trials()) == 2
    # A file path works as the spec too.
    assert client.submit(EXAMPLES / "quick.json").cancel().state in ("cancelled", "cancelling")


def test_errors_are_typed_and_carry_the_apis_message(stack: Stack) -> None:
    client = Client(stack.url)
    with pytest.raises(NotFound, match="no job with id") as missing:
        client.job("0" * 32)
    assert missing.value.status == 404
    with pytest.raises(Invalid, match="search_space") as invalid:
        client.submit({"dataset": {"builtin": "iris"}, "search_space": {"lr": -1}})
    assert invalid.value.status == 422
    running = client.submit(
        {"dataset": {"builtin": "digits"}, "search_space": {"epochs": 200, "batch_size": 8}}
    )
    with pytest.raises(Conflict, match="no model"):
        client.predict(running.id, pd.DataFrame(digits_rows(1)))
    running.cancel()
    with pytest.raises(Unreachable, match="is `tunefleet up` running"):
        Client("http://127.0.0.1:9").jobs()
