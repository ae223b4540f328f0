"""Results a person reads: the trials table in three formats, histories, live events."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pandas as pd
import pytest

from tests.helpers.stack import Stack

pytestmark = pytest.mark.e2e

TINY_JOB = {
    "name": "events",
    "dataset": {"builtin": "iris"},
    "search_space": {"lr": {"grid": [0.01, 0.03]}, "hidden_units": 16, "epochs": 3},
}


def read_events(stack: Stack, job_id: str, timeout_s: float = 300) -> list[tuple[str, Any]]:
    """Follow GET /jobs/{id}/events to its end; (event, data) pairs in order."""
    events: list[tuple[str, Any]] = []
    kind = None
    with stack.http.stream("GET", f"/jobs/{job_id}/events", timeout=timeout_s) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((str(kind), json.loads(line.removeprefix("data: "))))
    return events


def test_trials_table_has_what_the_seed_reads_in_every_format(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    url = f"/jobs/{quick_job['id']}/trials"
    rows = stack.http.get(url).json()
    assert len(rows) == 4
    for row in rows:
        assert row["iterations"] == 8 and row["early_stopped"] is False
        assert row["time_total_s"] > 0 and row["node_id"]
        # Best over the epochs is at least as good as the last epoch.
        assert row["best_metrics"]["val_accuracy"] >= row["metrics"]["val_accuracy"]
        assert row["best_metrics"]["val_loss"] <= row["metrics"]["val_loss"]

    csv = pd.read_csv(io.StringIO(stack.http.get(url, params={"format": "csv"}).text))
    answer = stack.http.get(url, params={"format": "parquet"})
    assert answer.headers["content-type"] == "application/vnd.apache.parquet"
    parquet = pd.read_parquet(io.BytesIO(answer.content))
    for table in (csv, parquet):
        assert len(table) == 4
        assert {"trial_id", "state", "iterations", "time_total_s", "node_id", "early_stopped",
                "config/lr", "config/hidden_units", "metrics/val_accuracy",
                "best_metrics/val_accuracy"} <= set(table.columns)  # fmt: skip
    assert parquet["config/lr"].dtype == float and parquet["iterations"].dtype == "int64"

    best_first = stack.http.get(url, params={"format": "csv", "sort": "metric", "limit": 2})
    top = pd.read_csv(io.StringIO(best_first.text))
    assert len(top) == 2
    assert top["best_metrics/val_accuracy"].iloc[0] == pytest.approx(quick_job["best"]["value"])
    assert top["best_metrics/val_accuracy"].is_monotonic_decreasing
    sorted_json = stack.http.get(url, params={"sort": "metric"}).json()
    assert sorted_json[0]["trial_id"] == quick_job["best"]["trial_id"]


def test_a_trial_history_has_every_epoch(stack: Stack, quick_job: dict[str, Any]) -> None:
    trial_id = quick_job["best"]["trial_id"]
    history = stack.http.get(f"/jobs/{quick_job['id']}/trials/{trial_id}/history").json()
    assert [epoch["training_iteration"] for epoch in history] == list(range(1, 9))
    assert {"training_accuracy", "val_accuracy", "training_loss", "val_loss"} <= set(history[0])
    assert max(e["val_accuracy"] for e in history) == pytest.approx(quick_job["best"]["value"])

    missing = stack.http.get(f"/jobs/{quick_job['id']}/trials/nosuch_00000/history")
    assert missing.status_code == 404 and "nosuch_00000" in missing.json()["detail"]


def test_events_stream_a_job_live_until_it_ends(stack: Stack) -> None:
    job_id = stack.http.post("/jobs", json=TINY_JOB).json()["id"]
    events = read_events(stack, job_id)
    jobs = [data for kind, data in events if kind == "job"]
    trials = [data for kind, data in events if kind == "trial"]
    assert jobs[0]["id"] == job_id and jobs[0]["state"] in ("queued", "running")
    assert jobs[-1]["state"] == "succeeded", jobs[-1].get("error")
    assert "running" in [job["state"] for job in jobs]
    # Every epoch of both trials arrived, in order per trial.
    epochs = {}
    for row in trials:
        epochs.setdefault(row["trial_id"], []).append(row["iterations"])
    assert len(epochs) == 2
    for seen in epochs.values():
        assert [n for n in seen if n] == sorted(n for n in seen if n)
        assert max(seen) == 3

    # A finished job answers its final state and ends the stream at once.
    again = read_events(stack, job_id, timeout_s=30)
    assert [(kind, data["state"]) for kind, data in again] == [("job", "succeeded")]


def test_events_of_an_unknown_job_are_404(stack: Stack) -> None:
    answer = stack.http.get(f"/jobs/{'0' * 32}/events")
    assert answer.status_code == 404
    with pytest.raises(httpx.HTTPStatusError):
        answer.raise_for_status()
