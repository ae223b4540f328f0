"""TunefleetError -> HTTP, in one place: the status of each error, the next step an
error about a subject gets (the route that lists or makes such things: the domain's
messages name no routes), Redis outages as 503, and the message shape in OpenAPI."""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from shared.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    StorageFullError,
    StorageUnavailableError,
    TooManyJobsError,
    TooManyStreamsError,
    TunefleetError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from shared.redis_client import UNREACHABLE
from shared.vocabulary import Subject

STATUS_OF_ERROR: dict[type[TunefleetError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    InvalidInputError: 422,
    QueueFullError: 429,
    TooManyJobsError: 429,
    TooManyStreamsError: 429,
    UnauthorizedError: 401,
    StorageUnavailableError: 503,
    StorageFullError: 507,
}
REDIS_RETRY_AFTER_S = 5
# What to do next, by the kind of error and what it is about; {ref} is the error's ref,
# and {{id}} is spelled for the caller to fill in.
NEXT_STEP: dict[tuple[type[TunefleetError], Subject], str] = {
    (NotFoundError, Subject.JOB): "GET /jobs lists the jobs",
    (NotFoundError, Subject.TRIAL): "GET /jobs/{ref}/trials lists them",
    (NotFoundError, Subject.DATASET): "upload it with POST /datasets",
    (NotFoundError, Subject.MODEL): "GET /models lists the models",
    (NotFoundError, Subject.ALIAS): "GET /models/aliases lists them",
    (ConflictError, Subject.ALIAS): (
        "PUT /models/aliases/{ref} moves it, DELETE /models/aliases/{ref} deletes it"
    ),
    (PayloadTooLargeError, Subject.DATASET): (
        "GET /datasets lists them, DELETE /datasets/{{id}} removes one"
    ),
    (PayloadTooLargeError, Subject.MODEL): (
        "GET /models lists them, DELETE /models/{{id}} removes one"
    ),
}

log = logging.getLogger(__name__)


def add_error_handlers(app: FastAPI) -> None:
    """Answer every TunefleetError with its status and ``{"detail": message}``, and say
    so in the app's OpenAPI schema: a 422 is either FastAPI's list of validation errors
    or one message of ours."""
    app.add_exception_handler(TunefleetError, _tunefleet_error)
    # Each passes by itself (Redis restarts, or replays its data), so the caller is told
    # to retry.
    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, _redis_unreachable)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 summary=app.summary, servers=app.servers)  # fmt: skip
            _document_messages(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_messages(schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorMessage"] = {
        "type": "object",
        "properties": {"detail": {"type": "string", "description": "What to fix."}},
        "required": ["detail"],
    }
    message = {"$ref": "#/components/schemas/ErrorMessage"}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            invalid = operation.get("responses", {}).get("422")
            if invalid is None:
                continue
            content = invalid.setdefault("content", {}).setdefault("application/json", {})
            fastapi_own = content.get("schema")
            content["schema"] = {"anyOf": [fastapi_own, message]} if fastapi_own else message


def detail_of(exc: TunefleetError) -> str:
    """The error's message, and the next step its kind and subject call for."""
    if exc.subject is None:
        return str(exc)
    step = next(
        (text for (kind, subject), text in NEXT_STEP.items()
         if isinstance(exc, kind) and subject is exc.subject),
        None,
    )  # fmt: skip
    if step is None:
        return str(exc)
    return f"{exc}; {step.format(ref=exc.ref)}"


async def _tunefleet_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TunefleetError)
    status = next((code for kind, code in STATUS_OF_ERROR.items() if isinstance(exc, kind)), 500)
    headers = {}
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(status_code=status, content={"detail": detail_of(exc)}, headers=headers)


async def _redis_unreachable(request: Request, exc: Exception) -> JSONResponse:
    # One line, no traceback: an outage is not a bug, and it fails every request at once.
    log.warning("%s %s: Redis is unreachable: %r", request.method, request.url.path, exc)
    return redis_unreachable_response(exc)


def redis_unreachable_response(exc: Exception) -> JSONResponse:
    """503 for a request that needed Redis while it could not answer. The message names
    no address: callers need not know where Redis runs."""
    if isinstance(exc, redis.BusyLoadingError):
        detail = "Redis is loading its data after a restart"
    else:
        detail = "Redis is unreachable"
    return JSONResponse(
        status_code=503,
        content={"detail": f"{detail}; retry in {REDIS_RETRY_AFTER_S} seconds"},
        headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
    )
