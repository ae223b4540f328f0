"""Redis going away and coming back under the gateway and the predictor (in process, no
Serve): 503 with Retry-After while it is away, answers again once it is back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from services.gateway.app import create_app as create_gateway
from services.predictor.app import create_app as create_predictor
from shared.registry import ModelRegistry
from shared.settings import Settings

SPEC = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}}


async def no_predictions(model_id: str, matrix: np.ndarray) -> dict[str, Any]:
    raise AssertionError("no prediction is asked for here")


def assert_redis_unreachable(answer: Any) -> None:
    assert answer.status_code == 503, answer.text
    assert 0 < int(answer.headers["Retry-After"]) <= 30
    detail = answer.json()["detail"]
    assert "Redis is unreachable" in detail and "retry" in detail
    assert "127.0.0.1" not in detail  # where Redis runs is no caller's business


def test_while_redis_is_away_routes_answer_503_and_health_recovers(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        settings = Settings(redis_url=server.url, home=tmp_path)
        # A 500 would be raised here rather than answered: answer it, to see its status.
        gateway = TestClient(
            create_gateway(settings), base_url="http://127.0.0.1", raise_server_exceptions=False
        )
        models = TestClient(
            create_predictor(settings, ModelRegistry.from_url(server.url), no_predictions),
            base_url="http://127.0.0.1",
            raise_server_exceptions=False,
        )
        submitted = gateway.post("/jobs", json=SPEC)
        assert submitted.status_code == 202
        job_id = submitted.json()["id"]

        server.kill()
        for answer in (
            gateway.post("/jobs", json=SPEC),
            gateway.get("/jobs"),
            gateway.get(f"/jobs/{job_id}/events"),
            gateway.get("/healthz"),
            models.get("/"),
            models.get("/aliases"),
        ):
            assert_redis_unreachable(answer)
        assert gateway.get("/livez").status_code == 200

        server.start()  # the same port and data folder: the job was kept
        assert gateway.get("/healthz").status_code == 200  # the first request after
        assert models.get("/").status_code == 200
        job = gateway.get(f"/jobs/{job_id}")
        assert job.status_code == 200 and job.json()["state"] == "queued"
    finally:
        server.stop()


def test_the_first_request_after_redis_restarts_is_answered(tmp_path: Path) -> None:
    # One event loop for every request, as in a Serve replica: its Redis connections
    # outlive the restart, dead.
    with RedisServer(tmp_path / "redis") as server:
        settings = Settings(redis_url=server.url, home=tmp_path)
        app = create_predictor(settings, ModelRegistry.from_url(server.url), no_predictions)
        with TestClient(app, base_url="http://127.0.0.1") as models:
            assert models.get("/").status_code == 200
            server.kill()
            server.start()
            answer = models.get("/")
            assert answer.status_code == 200, answer.text
