"""Schema fuzzing of the running stack: schemathesis generates requests from the gateway's
and the predictor's OpenAPI schemas, valid ones and invalid ones, and every answer must be
free of server errors and match what the schema documents for its status and media type.

Bounded: a few dozen generated requests per operation (plus schemathesis' boundary-value
cases), about a minute in all. A job the fuzzing gets queued is cancelled at once, and
anything it left (a job still queued or running, a deleted alias) is put back afterwards,
because the stack is shared by the whole session.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from tests.helpers.stack import Stack

pytestmark = pytest.mark.e2e

# Operations answer undocumented statuses on purpose (404 for an unknown id, 409, 413),
# so status_code_conformance is not asked for; what is documented must hold.
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,  # nothing written under the repository
    suppress_health_check=list(HealthCheck),
)
# Per request; GET /jobs/{id}/events streams a live job's events until it ends, and
# schemathesis stops reading a stream after this long.
REQUEST_TIMEOUT_S = 30
FINAL_STATES = {"succeeded", "failed", "cancelled"}


def _lazy_loading_works(request: pytest.FixtureRequest) -> None:
    """schemathesis' lazy loader (4.32) reads and rewrites ``Node._nodeid``, which pytest 9.2
    no longer has (it keeps ``Node._id``): give the test item the attribute it looks for.
    Each operation still reports as a subtest of its own."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


@pytest.fixture
def gateway_schema(stack: Stack, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    _lazy_loading_works(request)
    schema = schemathesis.openapi.from_url(f"{stack.url}/openapi.json", timeout=60)
    schema.config.update(base_url=stack.url)
    return schema


@pytest.fixture
def models_schema(stack: Stack, request: pytest.FixtureRequest) -> schemathesis.BaseSchema:
    _lazy_loading_works(request)
    schema = schemathesis.openapi.from_url(f"{stack.url}/models/openapi.json", timeout=60)
    schema.config.update(base_url=f"{stack.url}/models")
    return schema


@pytest.fixture
def leaves_stack_as_found(stack: Stack) -> Iterator[None]:
    """Cancel the jobs the fuzzing queued and restore the aliases it deleted."""
    jobs_before = {job["id"] for job in stack.http.get("/jobs", params={"limit": 1000}).json()}
    aliases_before = stack.http.get("/models/aliases").json()
    yield
    created = [
        job
        for job in stack.http.get("/jobs", params={"limit": 1000}).json()
        if job["id"] not in jobs_before
    ]
    for job in created:
        if job["state"] not in FINAL_STATES:
            stack.http.delete(f"/jobs/{job['id']}")  # 409 if it ended meanwhile
    deadline = time.monotonic() + 180
    pending = [job["id"] for job in created]
    while pending and time.monotonic() < deadline:
        pending = [
            job_id
            for job_id in pending
            if stack.http.get(f"/jobs/{job_id}").json()["state"] not in FINAL_STATES
        ]
        if pending:
            time.sleep(1)
    for name, model_id in aliases_before.items():
        if stack.http.get("/models/aliases").json().get(name) != model_id:
            stack.http.put(f"/models/aliases/{name}", json={"model_id": model_id})
    assert not pending, f"jobs queued by the fuzzing did not end: {pending}"


gateway = schemathesis.pytest.from_fixture("gateway_schema")
models = schemathesis.pytest.from_fixture("models_schema")


@gateway.parametrize()
@FUZZ
@pytest.mark.usefixtures("leaves_stack_as_found")
def test_gateway_answers_as_documented(case: schemathesis.Case, stack: Stack) -> None:
    response = case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT_S)
    if case.method == "POST" and case.path == "/jobs" and response.status_code == 202:
        # A valid spec queues a real job: cancel it before the driver spends time on it.
        stack.http.delete(f"/jobs/{response.json()['id']}")


@models.parametrize()
@FUZZ
@pytest.mark.usefixtures("leaves_stack_as_found")
def test_models_answer_as_documented(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT_S)
