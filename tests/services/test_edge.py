"""The gateway's edge in process (no Serve): body limits without a Content-Length."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from services.gateway.app import create_app
from shared.settings import Settings


def chunks(total_bytes: int) -> Iterator[bytes]:
    for _ in range(total_bytes // 100):
        yield b"x" * 100


def test_a_chunked_body_over_the_limit_is_413(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = Settings(
        redis_url=redis_server.url, home=tmp_path, max_body_bytes=1_000, max_upload_bytes=5_000
    )
    client = TestClient(create_app(settings))
    json_body = client.post(
        "/jobs", content=chunks(2_000), headers={"content-type": "application/json"}
    )
    assert json_body.status_code == 413 and "at most 1000" in json_body.json()["detail"]
    upload = client.post("/datasets", content=chunks(10_000), headers={"content-type": "text/csv"})
    assert upload.status_code == 413 and "at most 5000" in upload.json()["detail"]
    # Under the limits, the same way in, the body is read as usual.
    small = client.post("/datasets", content=chunks(1_000), headers={"content-type": "text/csv"})
    assert small.status_code == 422  # one column of x: read, then refused for its content
