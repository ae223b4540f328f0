"""What the edge refuses before any route sees a request: bodies past their limit
(413), and, on a stack without API keys, requests by other names or from other sites'
pages."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.edge.errors import redis_unreachable_response
from shared.auth import KeyStore
from shared.redis_client import UNREACHABLE

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


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
