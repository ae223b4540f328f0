"""The dependencies that both HTTP services' routes take: who a request acts for (its
API key), and a submission's Idempotency-Key header."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from shared.auth import ANONYMOUS, KeyStore, Principal
from shared.errors import UnauthorizedError


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
