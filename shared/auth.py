"""API keys and tenants.

A key belongs to a tenant; a tenant sees its own jobs, datasets and models only, and an
admin key sees every tenant's. Keys are stored as SHA-256 digests, never as they are.
With no key stored, auth is off: everyone is the default tenant, with admin rights, and
the stack only listens on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time

import redis
import redis.asyncio
from pydantic import BaseModel

from shared import redis_keys
from shared.errors import InvalidInputError
from shared.redis_client import connect_async
from shared.vocabulary import DEFAULT_TENANT, TENANT_PATTERN

KEY_PREFIX = "tfk_"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
RECONNECT_RETRIES = 3


class Principal(BaseModel):
    """Who a request acts for."""

    tenant: str
    admin: bool = False

    def may_see(self, tenant: str) -> bool:
        return self.admin or tenant == self.tenant


ANONYMOUS = Principal(tenant=DEFAULT_TENANT, admin=True)


class KeyStore:
    """API keys in Redis, by digest. The only place that touches their key."""

    def __init__(self, client: redis.Redis, url: str | None = None) -> None:
        self._redis = client
        # For the checks of every request, on the event loop without a thread hop.
        self._url = url
        self._async: tuple[asyncio.AbstractEventLoop, redis.asyncio.Redis] | None = None

    @classmethod
    def from_url(cls, url: str) -> KeyStore:
        return cls(redis.Redis.from_url(url, decode_responses=True), url)

    def create(self, tenant: str, admin: bool = False) -> str:
        """A new key for ``tenant``; the only time the key itself is seen."""
        if not re.fullmatch(TENANT_PATTERN, tenant):
            raise InvalidInputError(
                f"tenant {tenant!r}: use 1-40 characters a-z, 0-9, _ and -, starting with a "
                "letter or digit"
            )
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        record = {"tenant": tenant, "admin": admin, "created_at": time.time()}
        self._redis.hset(redis_keys.API_KEYS, _digest(key), json.dumps(record))
        return key

    def revoke(self, key: str) -> bool:
        return bool(self._redis.hdel(redis_keys.API_KEYS, _digest(key)))

    def enabled(self) -> bool:
        """Whether any key exists: then every request needs one."""
        return bool(self._redis.hlen(redis_keys.API_KEYS))

    def resolve(self, key: str) -> Principal | None:
        return _principal(self._redis.hget(redis_keys.API_KEYS, _digest(key)))

    async def enabled_async(self) -> bool:
        """``enabled``, read without blocking the event loop."""
        return bool(await self._async_client().hlen(redis_keys.API_KEYS))

    async def resolve_async(self, key: str) -> Principal | None:
        """``resolve``, read without blocking the event loop."""
        return _principal(await self._async_client().hget(redis_keys.API_KEYS, _digest(key)))

    def _async_client(self) -> redis.asyncio.Redis:
        # An asyncio client belongs to the loop it first ran on: one per loop (a
        # replica has one; a test client may start a loop per request).
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            if self._url is None:
                raise RuntimeError("this KeyStore was made without a URL: use from_url")
            client = connect_async(self._url, RECONNECT_RETRIES)
            self._async = (loop, client)
        return self._async[1]


def _principal(raw: object) -> Principal | None:
    if not raw:
        return None
    record = json.loads(str(raw))
    return Principal(tenant=record["tenant"], admin=bool(record["admin"]))


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
