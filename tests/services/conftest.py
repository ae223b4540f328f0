"""A driver's engine on a local Ray (``engine``: a spec in, the job and its trials out), a
predictor replica in process (``models``, on a ``settings`` of the test's Redis and
folder), and a headless Chromium for the dashboard's tests (test_dashboard*.py).

Needs /usr/bin/chromium (the Debian package; .ci/run installs it) and the playwright
package (the dev extras); Playwright's own browser downloads are not used. Tests that
take a ``page`` are skipped where Chromium is not installed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import ray
import redis
from fastapi.testclient import TestClient

from cluster.redis_server import RedisServer
from services.driver.driver import Driver
from services.gateway.app import create_app as create_gateway
from shared.auth import KeyStore
from shared.job_views import JobView
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.results import TrialRow
from shared.settings import Settings
from shared.spec import JobSpec
from tests.helpers.browser import CHROMIUM, WAIT_MS
from tests.helpers.models import replica

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """A local Ray whose node declares one logical GPU (there is no CUDA here)."""
    ray.init(address="local", num_cpus=2, num_gpus=1, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture
def engine(local_ray: None, redis_server: Any, redis_client: redis.Redis, tmp_path: Path) -> Any:
    settings = Settings(redis_url=redis_server.url, home=tmp_path, storage=tmp_path / "storage")
    jobs, registry = JobStore(redis_client), ModelRegistry(redis_client)

    def run(spec: dict[str, Any], **operator: Any) -> tuple[JobView, list[TrialRow]]:
        driver = Driver(settings.model_copy(update=operator), jobs, registry)
        job_id, _ = jobs.enqueue(JobSpec.model_validate(spec))
        lease = jobs.claim(driver.driver_id)
        assert lease is not None and lease.job_id == job_id
        driver.run_one(lease)
        return jobs.get(job_id), jobs.results.trials(job_id)

    run.registry = registry  # type: ignore[attr-defined]
    run.settings = settings  # type: ignore[attr-defined]
    run.jobs = jobs  # type: ignore[attr-defined]
    return run


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> Settings:
    """The stack's settings on the test's Redis (emptied by ``redis_client``) and folder."""
    return Settings(redis_url=redis_server.url, home=tmp_path)


@pytest.fixture
def models(settings: Settings) -> TestClient:
    """One predictor replica's /models app, in process."""
    return replica(settings)


@pytest.fixture
def clients(
    redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path
) -> dict[str, TestClient]:
    """The gateway in process, as three tenants (API keys) see it: alpha, beta, and ops,
    the one that may submit high-priority jobs."""
    settings = Settings(
        redis_url=redis_server.url,
        home=tmp_path,
        high_priority_tenants=["ops"],
        min_trial_cpu=0.5,
        max_trials=50,
    )
    app = create_gateway(settings)
    keys = KeyStore(redis_client)
    return {
        tenant: TestClient(
            app,
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {keys.create(tenant)}"},
        )
        for tenant in ("alpha", "beta", "ops")
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"the dashboard tests drive {CHROMIUM}, which is not installed "
            "(apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page (its own storage) that fails the test on a script error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    opened.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))

    def on_console(message: ConsoleMessage) -> None:
        # The 401s, 409s and 422s the tests provoke are logged by Chromium as failed loads.
        if message.type == "error" and "Failed to load resource" not in message.text:
            errors.append(message.text)

    opened.on("console", on_console)
    yield opened
    context.close()
    assert not errors, f"errors in the page: {errors}"
