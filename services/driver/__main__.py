"""``python -m services.driver``: run a driver against TUNEFLEET_REDIS_URL and Ray.

``--check`` exits 0 when Redis answers and at least one driver's heartbeat is alive,
else 1 (for health probes and scripts).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from types import FrameType

import redis

from shared.jobs import JobStore
from shared.settings import Settings, get_settings

log = logging.getLogger("services.driver")
REDIS_PATIENCE_S = 60.0


def check(store: JobStore) -> int:
    """0 if some driver is alive, 1 if none is or Redis does not answer."""
    try:
        drivers = store.drivers.live()
    except redis.RedisError as exc:
        print(f"unhealthy: Redis does not answer ({exc})", file=sys.stderr)
        return 1
    if not drivers:
        print("unhealthy: no driver has sent a heartbeat within its lease", file=sys.stderr)
        return 1
    print(f"healthy: {len(drivers)} live driver(s): {', '.join(drivers)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.driver")
    parser.add_argument("--check", action="store_true", help="exit 0 if a driver is alive")
    args = parser.parse_args(argv)
    settings = get_settings()
    if settings.redis_url is None:
        print("set TUNEFLEET_REDIS_URL to the Redis that holds the job queue", file=sys.stderr)
        return 2
    if args.check:
        return check(JobStore(redis.Redis.from_url(settings.redis_url, decode_responses=True)))
    run(settings)
    return 0


def run(settings: Settings) -> None:
    """Take jobs until a signal stops the driver."""
    # Imported here: Ray, Tune and torch take seconds to import, which a health probe
    # (--check, above) should not pay.
    import ray

    from services.driver.driver import Driver
    from shared.redis_client import connect
    from shared.registry import ModelRegistry

    assert settings.redis_url is not None
    # A Redis restart (seconds) is ridden out; a longer outage leaves the job to be
    # reclaimed once Redis is back.
    client = connect(settings.redis_url, patience_s=REDIS_PATIENCE_S)
    store = JobStore(client, settings.queue_policy())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # RAY_ADDRESS, when set, names the cluster; otherwise Ray finds or starts a local one.
    ray.init(logging_level=logging.WARNING)
    driver = Driver(settings, store, ModelRegistry(client))

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info(
            "driver: %s; stopping its trials and handing its job back", signal.Signals(signum).name
        )
        driver.stop()

    # A deploy, `ray down` or Ctrl-C on the stack: the job goes back to the queue.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    driver.run_forever()


if __name__ == "__main__":
    sys.exit(main())
