"""Redis clients that ride out a Redis restart instead of failing at once."""

from __future__ import annotations

from typing import Self

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

# While Redis restarts (`tunefleet up` brings its own back within a second or two), or
# replays its append-only file (it answers LOADING), commands fail with these.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)
BACKOFF_CAP_S = 1.0


def connect(url: str, patience_s: float = 0.0) -> redis.Redis:
    """A client of ``url`` (decoded strings) that retries a command failing because
    Redis is unreachable for about ``patience_s`` before raising.

    A retried command may have run once already (its answer lost with the connection);
    the queue's transitions are scripts that find a job where the first run left it.
    """
    # Waits of 0.05, 0.1, ... s, then BACKOFF_CAP_S each: about patience_s in all.
    retries = 0 if patience_s <= 0 else 5 + int(patience_s / BACKOFF_CAP_S)
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        retry=Retry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=0.05), retries),
        retry_on_error=list(UNREACHABLE),
    )


def connect_async(url: str, retries: int) -> redis.asyncio.Redis:
    """``connect``'s asyncio twin, retrying a command ``retries`` times on the same
    backoff. After Redis restarts, the first command on each pooled connection fails
    once before the client connects again."""
    return redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        retry=AsyncRetry(ExponentialBackoff(cap=BACKOFF_CAP_S, base=0.05), retries),
        retry_on_error=list(UNREACHABLE),
    )


class RedisStore:
    """The keys of one concern in Redis (jobs, models, API keys...), behind one client:
    given one, or made from a URL."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> Self:
        return cls(redis.Redis.from_url(url, decode_responses=True))
