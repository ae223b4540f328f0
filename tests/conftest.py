"""Fixtures shared by the tests: our own redis-server on a free port, and the whole stack."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from cluster.redis_server import RedisServer
from tests.helpers.stack import EXAMPLES, Stack

# Fixtures that start the whole stack: a test taking one of them is marked e2e.
STACK_FIXTURES = {"stack", "quick_job", "s3_stack"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if STACK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True, scope="session")
def _fast_tier_starts_no_ray() -> Iterator[None]:
    """`make test-fast` runs without Ray: there, a test that starts it lacks its mark."""
    if os.environ.get("TUNEFLEET_TEST_TIER") != "fast":
        yield
        return
    import ray

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("this test starts Ray: mark it `ray` (or `e2e`)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ray, "init", refuse)
        yield


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server in a temp folder, never the one that may listen on 6379."""
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of the test Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole embedded stack, once per test session; stopping it must leave nothing."""
    running = Stack(tmp_path_factory.mktemp("stack"))
    running.start()
    yield running
    left = running.stop()
    assert not left, f"processes left after Ctrl-C: {left}\n{running.log_tail()}"


@pytest.fixture(scope="session")
def quick_job(stack: Stack) -> dict[str, Any]:
    """examples/quick.json, submitted over HTTP and followed to its end."""
    spec = json.loads((EXAMPLES / "quick.json").read_text())
    answer = stack.http.post("/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status_url"] == f"/jobs/{accepted['id']}"
    return stack.wait_for(accepted["id"])
