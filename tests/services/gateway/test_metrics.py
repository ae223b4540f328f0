"""GET /metrics in process (the gateway on a real redis-server): what Prometheus scrapes
moves with what the queue does."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from cluster.redis_server import RedisServer
from services.edge.metrics import HttpMetrics
from services.gateway.app import create_app
from shared.auth import KeyStore
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.registry import ModelRecord, ModelRegistry
from shared.results import TrialRow
from shared.settings import Settings
from tests.helpers.stack import REPO, Stack, digits_rows

GRAFANA = REPO / "cluster" / "grafana-dashboard.json"

SPEC = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}}


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def test_a_scrape_follows_jobs_through_the_queue(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    client = TestClient(
        create_app(Settings(redis_url=redis_server.url, home=tmp_path)),
        base_url="http://127.0.0.1",
    )
    before = scrape(client)
    assert before[("tunefleet_jobs_submitted_total", ())] == 0
    ids = [client.post("/jobs", json=SPEC).json()["id"] for _ in range(3)]
    queued = scrape(client)
    assert queued[("tunefleet_queued_jobs", (("priority", "normal"), ("tenant", "default")))] == 3
    assert queued[("tunefleet_jobs_submitted_total", ())] == 3

    jobs = JobStore(redis_client)
    lease = jobs.claim("driver")
    assert lease is not None and lease.job_id == ids[0]
    jobs.record_trial(lease, TrialRow(trial_id="t", state="RUNNING", config={}),
                      {"training_iteration": 1})  # fmt: skip
    jobs.record_progress(lease, 0, 4, None)
    running = scrape(client)
    assert running[("tunefleet_running_jobs", ())] == 1
    assert running[("tunefleet_running_trials", ())] == 4
    assert running[("tunefleet_epochs_total", ())] == 1
    assert running[("tunefleet_submit_to_start_seconds_count", ())] == 1
    assert running[("tunefleet_submit_to_start_seconds_bucket", (("le", "+Inf"),))] == 1

    jobs.succeed(lease, BestTrial(trial_id="t", metric="m", value=1, config={}), {})
    client.delete(f"/jobs/{ids[1]}")
    ended = scrape(client)
    assert ended[("tunefleet_jobs_ended_total", (("state", "succeeded"),))] == 1
    assert ended[("tunefleet_jobs_ended_total", (("state", "cancelled"),))] == 1
    assert ended[("tunefleet_job_duration_seconds_count", ())] == 1
    assert ended[("tunefleet_queued_jobs", (("priority", "normal"), ("tenant", "default")))] == 1


def test_answers_are_counted_by_status(tmp_path: Path) -> None:
    # A Redis of its own: the apps of earlier tests add their last counts to the shared
    # one up to a second after they answered.
    with RedisServer(tmp_path / "redis") as server:
        client = TestClient(
            create_app(Settings(redis_url=server.url, home=tmp_path)),
            base_url="http://127.0.0.1",
        )

        def answered(status: str) -> float:
            labels = (("app", "gateway"), ("status", status))
            return scrape(client).get(("tunefleet_http_responses_total", labels), 0)

        before = {status: answered(status) for status in ("202", "404", "422")}
        assert client.post("/jobs", json=SPEC).status_code == 202
        assert client.get("/jobs/0123456789abcdef0123456789abcdef").status_code == 404
        for _ in range(2):
            assert client.post("/jobs", json={"dataset": {"builtin": "nope"}}).status_code == 422
        assert answered("202") == before["202"] + 1
        assert answered("404") == before["404"] + 1
        assert answered("422") == before["422"] + 2


def test_metrics_need_an_admin_key_once_keys_exist(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    keys = KeyStore(redis_client)
    tenant, admin = keys.create("alpha"), keys.create("ops", admin=True)
    client = TestClient(
        create_app(Settings(redis_url=redis_server.url, home=tmp_path)),
        base_url="http://127.0.0.1",
    )
    assert client.get("/metrics").status_code == 401
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {tenant}"})
    assert answer.status_code == 401 and "admin key" in answer.json()["detail"]
    assert client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).status_code == 200


@pytest.mark.e2e
def test_the_stack_counts_a_finished_job(stack: Stack, quick_job: dict[str, Any]) -> None:
    answer = stack.http.get("/metrics")
    assert answer.status_code == 200
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }
    assert samples[("tunefleet_jobs_ended_total", (("state", "succeeded"),))] >= 1
    # The quick job's 4 trials of 8 epochs each.
    assert samples[("tunefleet_epochs_total", ())] >= 32
    assert samples[("tunefleet_live_drivers", ())] >= 1


def test_the_grafana_dashboard_charts_what_is_exported() -> None:
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs, "no panel queries anything"
    exported = {
        "tunefleet_queued_jobs", "tunefleet_running_jobs", "tunefleet_running_trials",
        "tunefleet_live_drivers", "tunefleet_jobs_submitted_total", "tunefleet_jobs_ended_total",
        "tunefleet_epochs_total", "tunefleet_submit_to_start_seconds_bucket",
        "tunefleet_job_duration_seconds_bucket", "tunefleet_http_responses_total",
        "tunefleet_predictions_total", "tunefleet_predicted_rows_total",
        "tunefleet_prediction_seconds_bucket",
    }  # fmt: skip
    for expr in exprs:
        named = set(re.findall(r"tunefleet_[a-z_]+", expr))
        assert named and named <= exported, expr


@pytest.mark.e2e
def test_the_stack_counts_predictions_per_model_and_errors(
    stack: Stack, quick_job: dict[str, Any]
) -> None:
    model = quick_job["id"]

    def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = stack.http.get("/metrics")
        assert answer.status_code == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }

    of_model = (("model", model),)
    missing = (("app", "predictor"), ("status", "404"))
    before = samples()
    for _ in range(3):
        answer = stack.http.post(f"/models/{model}/predict", json={"instances": digits_rows(5)})
        assert answer.status_code == 200, answer.text
    unknown = stack.http.post("/models/no-such-alias/predict", json={"instances": digits_rows(1)})
    assert unknown.status_code == 404

    # The predictor replica writes its sums about once a second.
    deadline = time.monotonic() + 20
    while True:
        after = samples()
        moved = after.get(("tunefleet_predictions_total", of_model), 0) - before.get(
            ("tunefleet_predictions_total", of_model), 0
        )
        if moved >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert moved == 3

    def grew(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert grew("tunefleet_predicted_rows_total", of_model) == 15
    assert grew("tunefleet_prediction_seconds_count", of_model) == 3
    assert grew("tunefleet_prediction_seconds_bucket", (("le", "+Inf"), ("model", model))) == 3
    assert after[("tunefleet_prediction_seconds_sum", of_model)] > 0
    assert grew("tunefleet_http_responses_total", missing) >= 1
    assert grew("tunefleet_http_responses_total", (("app", "predictor"), ("status", "200"))) >= 3


def test_per_model_series_are_bounded_and_go_with_their_model(tmp_path: Path) -> None:
    # A tenant looping import, predict, delete must not grow /metrics without end.
    with RedisServer(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        registry = ModelRegistry(client)

        def model(letter: str) -> str:
            registry.register(
                ModelRecord(
                    id=letter * 32, job_id=letter * 32, checkpoint_uri="/nowhere", config={},
                    metric="val_accuracy", mode="max", validation_value=0.5, test_metrics={},
                    feature_names=["a"], classes=[0, 1], created_at=time.time(),
                )
            )  # fmt: skip
            return letter * 32

        def series(metrics: HttpMetrics) -> set[str]:
            return {
                field.split(":")[1] for field in metrics.totals() if field.startswith("predict:")
            }

        replica, other_replica = HttpMetrics(client, "predictor"), HttpMetrics(client, "predictor")
        replica.max_model_series = other_replica.max_model_series = 2
        a, b, c = model("a"), model("b"), model("c")
        for model_id in (a, b, c):
            replica.observe_prediction(model_id, rows=3, seconds=0.01)
        assert series(replica) == {a, b, "other"}  # c's requests count, as "other"
        # a is deleted while another replica still holds a request of it to write.
        other_replica.observe_prediction(a, rows=1, seconds=0.01)
        registry.delete(a)
        replica.forget_model(a)
        other_replica.flush()
        assert series(replica) == {b, "other"}
        d = model("d")
        replica.observe_prediction(d, rows=1, seconds=0.01)
        assert series(replica) == {b, d, "other"}  # a's place is free again
