"""``python -m services.driver``: run a driver against TUNEFLEET_REDIS_URL and Ray."""

from __future__ import annotations

import logging
import sys

import ray
import redis

from services.driver.worker import Driver
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import get_settings


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    if settings.redis_url is None:
        print("set TUNEFLEET_REDIS_URL to the Redis that holds the job queue", file=sys.stderr)
        return 2
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    # RAY_ADDRESS, when set, names the cluster; otherwise Ray finds or starts a local one.
    ray.init(logging_level=logging.WARNING)
    Driver(settings, JobStore(client), ModelRegistry(client)).run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
