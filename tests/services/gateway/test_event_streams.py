"""GET /jobs/{id}/events over real HTTP (uvicorn in a thread, no Serve): the cap on
open streams per tenant, quiet streams ending, and the rest of the API answering while
many streams are open."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import redis

from cluster.redis_server import RedisServer
from services.gateway.app import create_app
from shared.settings import Settings
from tests.helpers.servers import served

SPEC = {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}}


def first_event(lines: Iterator[str]) -> tuple[str, str]:
    """(event, data) of the next event of a stream."""
    kind = ""
    for line in lines:
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            return kind, line.removeprefix("data: ")
    raise AssertionError("the stream ended before its next event")


def open_stream(http: httpx.Client, streams: ExitStack, job_id: str) -> Iterator[str]:
    """The lines of a new event stream of the job, which ``streams`` closes; waits while
    the server has yet to see earlier streams' clients go (429)."""
    deadline = time.monotonic() + 10
    while True:
        response = streams.enter_context(http.stream("GET", f"/jobs/{job_id}/events"))
        if response.status_code == 200:
            return response.iter_lines()
        assert response.status_code == 429 and time.monotonic() < deadline, response.read()
        response.close()
        time.sleep(0.05)


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> Settings:
    return Settings(redis_url=redis_server.url, home=tmp_path, max_event_streams_per_tenant=3)


def test_open_streams_are_capped_per_tenant_and_counted_back(settings: Settings) -> None:
    with served(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        job_id = http.post("/jobs", json=SPEC).json()["id"]
        with ExitStack() as streams:
            opened = [
                streams.enter_context(http.stream("GET", f"/jobs/{job_id}/events"))
                for _ in range(3)
            ]
            assert [response.status_code for response in opened] == [200] * 3
            # Each iterator kept: one dropped half-read closes its connection.
            followed = [response.iter_lines() for response in opened]
            for lines in followed:
                assert first_event(lines)[0] == "job"
            refused = http.get(f"/jobs/{job_id}/events")
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) > 0
            assert "3 open event streams" in refused.json()["detail"]

            # The rest of the API answers while the streams wait on Redis.
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert http.post("/jobs", json=SPEC).status_code == 202
            assert time.monotonic() - started < 2

            # A client that goes away gives its stream back: a new one opens.
            opened[0].close()
            followed[0] = open_stream(http, streams, job_id)
            assert first_event(followed[0])[0] == "job"
            assert http.get(f"/jobs/{job_id}/events").status_code == 429

        # Streams of a job that ends end with it, and give their slots back too.
        with ExitStack() as streams:
            followed = [open_stream(http, streams, job_id) for _ in range(3)]
            for lines in followed:
                assert first_event(lines)[0] == "job"
            assert http.delete(f"/jobs/{job_id}").status_code == 202
            for lines in followed:
                data = [line for line in lines if line.startswith("data: ")]
                assert '"state":"cancelled"' in data[-1]
        for _ in range(4):  # each ends at once: the job has ended
            finished = http.get(f"/jobs/{job_id}/events")
            assert finished.status_code == 200 and '"state":"cancelled"' in finished.text


def test_a_stream_with_nothing_to_say_ends_after_its_idle_time(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(
        redis_url=redis_server.url,
        home=tmp_path,
        max_event_streams_per_tenant=1,
        event_stream_idle_s=1.0,
    )
    with served(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        job_id = http.post("/jobs", json=SPEC).json()["id"]
        started = time.monotonic()
        quiet = http.get(f"/jobs/{job_id}/events")  # returns once the stream has ended
        assert quiet.status_code == 200
        assert 1.0 <= time.monotonic() - started < 5
        assert "event: job" in quiet.text and "reconnect with Last-Event-ID" in quiet.text
        # Its slot came back: the only one this tenant has.
        again = http.get(f"/jobs/{job_id}/events")
        assert again.status_code == 200


def test_a_stream_whose_redis_goes_away_ends_without_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with RedisServer(tmp_path / "redis") as server:
        settings = Settings(redis_url=server.url, home=tmp_path)
        with served(create_app(settings)) as url, httpx.Client(base_url=url, timeout=30) as http:
            job_id = http.post("/jobs", json=SPEC).json()["id"]
            with http.stream("GET", f"/jobs/{job_id}/events") as stream:
                lines = stream.iter_lines()
                assert next(line for line in lines if line.startswith("event: ")) == "event: job"
                server.kill()
                rest = list(lines)  # the stream ends instead of waiting for ever
            assert any("Redis is unreachable" in line for line in rest)
    assert any("Redis is unreachable" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


def test_the_api_answers_while_200_streams_are_open(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = Settings(redis_url=redis_server.url, home=tmp_path, max_event_streams_per_tenant=250)
    limits = httpx.Limits(max_connections=250)
    with (
        served(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=10, limits=limits) as followers,
        httpx.Client(base_url=url, timeout=10) as http,
        ExitStack() as streams,
    ):
        job_id = http.post("/jobs", json=SPEC).json()["id"]
        followed = [open_stream(followers, streams, job_id) for _ in range(200)]
        assert all(first_event(lines)[0] == "job" for lines in followed)
        for _ in range(3):
            started = time.monotonic()
            assert http.get("/healthz").status_code == 200
            assert http.post("/jobs", json=SPEC).status_code == 202
            assert time.monotonic() - started < 2
