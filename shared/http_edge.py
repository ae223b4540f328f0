"""The HTTP edge that every FastAPI app of tunefleet shares: TunefleetError -> status,
in one place, and who a request acts for (its API key)."""

from __future__ import annotations

from typing import Annotated, Any

import redis
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import ANONYMOUS, LOOPBACK_HOSTS, KeyStore, Principal
from shared.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    TooManyJobsError,
    TunefleetError,
    UnauthorizedError,
)
from shared.settings import Settings

STATUS_OF_ERROR: dict[type[TunefleetError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    InvalidInputError: 422,
    QueueFullError: 429,
    TooManyJobsError: 429,
    UnauthorizedError: 401,
}


def install_edge(
    app: FastAPI, settings: Settings, client: redis.Redis, upload_paths: tuple[str, ...]
) -> None:
    """What every tunefleet app has at its edge: API keys, errors mapped to HTTP (and
    documented), and body limits (``upload_paths`` take files up to the upload limit)."""
    app.state.keys = KeyStore(client)
    # Were every key revoked while the stack listens beyond this machine, nobody may in.
    app.state.open_without_keys = settings.http_host in LOOPBACK_HOSTS
    add_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        body_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
        upload_paths=upload_paths,
    )


def add_error_handlers(app: FastAPI) -> None:
    """Answer every TunefleetError with its status and ``{"detail": message}``, and say
    so in the app's OpenAPI schema: a 422 is either FastAPI's list of validation errors
    or one message of ours."""
    app.add_exception_handler(TunefleetError, _tunefleet_error)

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


async def _tunefleet_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in STATUS_OF_ERROR.items() if isinstance(exc, kind)), 500)
    headers = {}
    if isinstance(exc, QueueFullError | TooManyJobsError):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)


def principal_of(request: Request) -> Principal:
    """Who the request acts for: the tenant of its bearer key; everyone is the default
    tenant while no key exists, on a stack that listens on this machine only.
    UnauthorizedError for a missing or unknown key."""
    store: KeyStore = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        found = store.resolve(key.strip())
        if found is not None:
            return found
        raise UnauthorizedError("unknown API key; ask an admin for one (tunefleet keys create)")
    if store.enabled() or not request.app.state.open_without_keys:
        raise UnauthorizedError(
            "this tunefleet needs an API key: send the header 'Authorization: Bearer <key>' "
            "(the CLI: --api-key or TUNEFLEET_API_KEY)"
        )
    return ANONYMOUS


PrincipalDep = Annotated[Principal, Depends(principal_of)]


class BodyLimit:
    """Answers 413 before reading a body larger than its limit: ``upload_bytes`` for
    paths that take files, ``body_bytes`` for the JSON of every other path."""

    def __init__(
        self, app: ASGIApp, body_bytes: int, upload_bytes: int, upload_paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.body_bytes = body_bytes
        self.upload_bytes = upload_bytes
        self.upload_paths = upload_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            uploads = path.startswith(self.upload_paths)
            limit = self.upload_bytes if uploads else self.body_bytes
            what = "an upload" if uploads else "a request body"
            length = dict(scope["headers"]).get(b"content-length", b"0")
            if length.isdigit() and int(length) > limit:
                detail = f"{what} of {int(length)} bytes; at most {limit} are allowed"
                await JSONResponse(status_code=413, content={"detail": detail})(
                    scope, receive, send
                )
                return
            receive = _counted(receive, limit, what)  # a chunked body has no length
        await self.app(scope, receive, send)


def _counted(receive: Receive, limit: int, what: str) -> Receive:
    """``receive`` that stops a body once it passes ``limit`` bytes (413)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, f"{what} of more than {limit} bytes; at most {limit}")
        return message

    return counted
