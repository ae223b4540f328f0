"""Which drivers are alive: each says so once per lease, with a key that expires."""

from __future__ import annotations

import time

import redis

from shared import redis_keys
from shared.redis_client import RedisStore


class DriverRegistry(RedisStore):
    """Driver id -> alive, for /healthz, the metrics and `tunefleet up`'s wait."""

    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        super().__init__(client)
        self._lease_s = lease_s

    def heartbeat(self, driver_id: str) -> None:
        """Say that a driver is alive, for one lease."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(redis_keys.driver(driver_id), repr(time.time()), px=int(self._lease_s * 1000))
            pipe.zadd(redis_keys.DRIVERS, {driver_id: int(time.time() * 1000)})
            pipe.execute()

    def forget(self, driver_id: str) -> None:
        """A driver that stopped: not alive from now on."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(redis_keys.driver(driver_id))
            pipe.zrem(redis_keys.DRIVERS, driver_id)
            pipe.execute()

    def live(self) -> list[str]:
        """Drivers whose heartbeat has not expired."""
        known: list[str] = self._redis.zrange(redis_keys.DRIVERS, 0, -1)  # type: ignore[assignment]
        if not known:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            for driver_id in known:
                pipe.exists(redis_keys.driver(driver_id))
            flags = pipe.execute()
        gone = [d for d, flag in zip(known, flags, strict=True) if not flag]
        if gone:
            self._redis.zrem(redis_keys.DRIVERS, *gone)
        return [d for d, flag in zip(known, flags, strict=True) if flag]
