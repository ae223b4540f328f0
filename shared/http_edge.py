"""The HTTP edge that every FastAPI app of tunefleet shares: TunefleetError -> status,
in one place, Redis outages -> 503, who a request acts for (its API key), and which
requests are refused before any route sees them."""

from __future__ import annotations

import ipaddress
import logging
from typing import Annotated, Any
from urllib.parse import urlsplit

import redis
from fastapi import Depends, FastAPI, Header, HTTPException, Request
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
    StorageUnavailableError,
    TooManyJobsError,
    TooManyStreamsError,
    TunefleetError,
    UnauthorizedError,
    UnsupportedMediaTypeError,
)
from shared.http_metrics import CountResponses, HttpMetrics
from shared.redis_client import UNREACHABLE
from shared.settings import Settings

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
}
REDIS_RETRY_AFTER_S = 5
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

log = logging.getLogger(__name__)


def install_edge(
    app: FastAPI,
    settings: Settings,
    client: redis.Redis,
    upload_paths: tuple[str, ...],
    app_name: str,
) -> None:
    """What every tunefleet app has at its edge: API keys, errors mapped to HTTP (and
    documented; a Redis outage is 503), body limits (``upload_paths`` take files up to
    the upload limit), answers counted by status for GET /metrics (as ``app_name``),
    and, on a stack without keys, no requests by other names or from other sites'
    pages."""
    app.state.keys = KeyStore(client, settings.redis_url)
    app.state.http_metrics = HttpMetrics(client, app_name)
    # Were every key revoked while the stack listens beyond this machine, nobody may in.
    app.state.open_without_keys = settings.http_host in LOOPBACK_HOSTS
    add_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        body_bytes=settings.max_body_bytes,
        upload_bytes=settings.max_upload_bytes,
        upload_paths=upload_paths,
    )
    # Outside the body limit: its 413s are counted too.
    app.add_middleware(CountResponses, metrics=app.state.http_metrics)
    if app.state.open_without_keys:
        # Added last, so it runs first: a refused request reads no body.
        host = f"[{settings.http_host}]" if ":" in settings.http_host else settings.http_host
        own_url = f"http://{host}:{settings.http_port}"
        app.add_middleware(LoopbackOnlyWithoutKeys, keys=app.state.keys, own_url=own_url)


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


async def _tunefleet_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in STATUS_OF_ERROR.items() if isinstance(exc, kind)), 500)
    headers = {}
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if isinstance(exc, UnauthorizedError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)


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


async def principal_of(request: Request) -> Principal:
    """Who the request acts for: the tenant of its bearer key; everyone is the default
    tenant while no key exists, on a stack that listens on this machine only.
    UnauthorizedError for a missing or unknown key."""
    principal = await caller_of(request)
    if principal is None:
        raise UnauthorizedError(
            "this tunefleet needs an API key: send the header 'Authorization: Bearer <key>' "
            "(the CLI: --api-key or TUNEFLEET_API_KEY)"
        )
    return principal


async def caller_of(request: Request) -> Principal | None:
    """Who the request acts for, or None for a request without a key where keys are
    needed: for routes that answer everyone but tell some more. UnauthorizedError for
    an unknown key. Read from Redis on every request (a new or revoked key counts at
    once), on the event loop: a thread-pool hop cost more than the read."""
    store: KeyStore = request.app.state.keys
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        found = await store.resolve_async(key.strip())
        if found is not None:
            return found
        raise UnauthorizedError("unknown API key; ask an admin for one (tunefleet keys create)")
    if await store.enabled_async() or not request.app.state.open_without_keys:
        return None
    return ANONYMOUS


PrincipalDep = Annotated[Principal, Depends(principal_of)]
CallerDep = Annotated[Principal | None, Depends(caller_of)]
# A submission's Idempotency-Key header (POST /jobs, POST /models/{id}/batch).
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=200,
        description="A retried submission with the same key returns the first job.",
    ),
]


class LoopbackOnlyWithoutKeys:
    """While no API key exists, refuses what a web page of another site could make a
    browser send: a request whose Host is not a loopback name (421), and a POST, PUT,
    PATCH or DELETE whose Origin is not a loopback one (403).

    Without keys the stack answers anyone who reaches it, and only its loopback address
    keeps others out. A page whose own name its author points at 127.0.0.1 (DNS
    rebinding) reaches it too, but with that name as its Host; a page of any site can
    have the browser post a form to 127.0.0.1 (with its own Origin), though it cannot
    read the answer. With keys, such requests lack the Authorization header and get 401.
    """

    def __init__(self, app: ASGIApp, keys: KeyStore, own_url: str) -> None:
        self.app = app
        self.keys = keys
        self.own_url = own_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope)
            if refusal is not None:
                try:
                    # Asked only for a request that is refused without keys.
                    keys_exist = await self.keys.enabled_async()
                except UNREACHABLE as exc:
                    await redis_unreachable_response(exc)(scope, receive, send)
                    return
                if not keys_exist:
                    status, detail = refusal
                    await JSONResponse(status_code=status, content={"detail": detail})(
                        scope, receive, send
                    )
                    return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = dict(scope["headers"])
        use = (
            f"use {self.own_url}, or create an API key (tunefleet keys create) "
            "to use it from elsewhere"
        )
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not is_loopback_host(host):
            return 421, (
                "this tunefleet has no API keys, so it answers only requests made to a "
                f"loopback name, not to {host!r}: {use}"
            )
        origin = headers.get(b"origin", b"").decode("latin-1")
        if origin and scope["method"] not in SAFE_METHODS:
            netloc = urlsplit(origin).netloc if "://" in origin else ""
            if not (netloc and is_loopback_host(netloc)):
                return 403, (
                    f"this tunefleet has no API keys, so it takes no {scope['method']} from a "
                    f"page of another site (Origin {origin!r}): {use}"
                )
        return None


def is_loopback_host(host: str) -> bool:
    """Whether a Host header (a name or address, with or without a port) names this
    machine's loopback interface: localhost, 127.0.0.0/8 or [::1]."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6 address] with or without a port
        name = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") > 1:  # a bare v6 address, which a Host should not be
        name = host
    else:
        name, _, port = host.rpartition(":")
        if not name or not port.isdigit():
            name = host
    name = name.removesuffix(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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
