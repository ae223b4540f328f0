"""What the HTTP apps count for GET /metrics: answers by status, and predictions, their
rows and latency, per model.

Each process (a gateway or predictor replica) adds up in memory and a thread of its own
writes the sums to one Redis hash (redis_keys.HTTP_STATS) about once a second, one pipelined
round trip for all that happened meanwhile: a request pays for a dict update under a lock,
never for a Redis call. Every replica adds to the same hash, so any gateway's scrape sees
the whole service, and a restart loses at most the last second of one replica. A Redis
outage keeps the sums in memory until a write goes through again.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import Counter
from typing import Any

import redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import redis_keys

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
# Models with series of their own on /metrics; predictions with any further model add to
# the series of model "other". A deleted model's series go with it, and what a replica
# still had to write for it is dropped (its record is gone).
MAX_MODEL_SERIES = 1_000
OTHER_MODELS = "other"
# KEYS: the sums, the models with series. ARGV: most models, field, amount, field, ...
_FLUSH = f"""
local most = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local field = ARGV[i]
  local model, rest = string.match(field, "^predict:([^:]+):(.*)$")
  if model and model ~= "{OTHER_MODELS}" and redis.call("SISMEMBER", KEYS[2], model) == 0 then
    if redis.call("EXISTS", "{redis_keys.model("")}" .. model) == 0 then
      field = nil
    elseif redis.call("SCARD", KEYS[2]) < most then
      redis.call("SADD", KEYS[2], model)
    else
      field = "predict:{OTHER_MODELS}:" .. rest
    end
  end
  if field then redis.call("HINCRBYFLOAT", KEYS[1], field, ARGV[i + 1]) end
end
"""
# Seconds from a predict request's arrival at the predictor to its answer.
PREDICT_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HttpMetrics:
    """In-memory sums of one process's answers and predictions, flushed to Redis."""

    def __init__(self, client: redis.Redis, app_name: str) -> None:
        self._redis = client
        self._app = app_name
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._flusher: threading.Thread | None = None
        self._flush_script = client.register_script(_FLUSH)
        self.max_model_series = MAX_MODEL_SERIES

    def count_response(self, status: int) -> None:
        self._add({f"responses:{self._app}:{status}": 1})

    def observe_prediction(self, model_id: str, rows: int, seconds: float) -> None:
        """One answered predict request for ``model_id``."""
        name = f"predict:{model_id}"
        added: dict[str, float] = {
            f"{name}:count": 1,
            f"{name}:rows": rows,
            f"{name}:sum": seconds,
        }
        for le in PREDICT_LATENCY_BUCKETS_S:
            if seconds <= le:
                added[f"{name}:le:{le}"] = 1
        self._add(added)

    def flush(self) -> bool:
        """Write what was added since the last flush; False (kept for the next) if Redis
        did not take it."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if not pending:
            return True
        amounts = [item for pair in pending.items() for item in pair]
        try:
            self._flush_script(
                keys=[redis_keys.HTTP_STATS, redis_keys.HTTP_STATS_MODELS],
                args=[self.max_model_series, *amounts],
            )
        except redis.RedisError:
            with self._lock:
                self._pending.update(pending)
            return False
        return True

    def forget_model(self, model_id: str) -> None:
        """Drop a deleted model's series, here and in Redis."""
        prefix = f"predict:{model_id}:"
        with self._lock:
            for field in [f for f in self._pending if f.startswith(prefix)]:
                del self._pending[field]
        fields = [f"{prefix}{name}" for name in ("count", "rows", "sum")]
        fields += [f"{prefix}le:{le}" for le in PREDICT_LATENCY_BUCKETS_S]
        pipe = self._redis.pipeline(transaction=True)
        pipe.hdel(redis_keys.HTTP_STATS, *fields)
        pipe.srem(redis_keys.HTTP_STATS_MODELS, model_id)
        pipe.execute()

    def totals(self) -> dict[str, float]:
        """Every process's sums so far (this one's flushed first): field -> value."""
        self.flush()
        raw: dict[str, str] = self._redis.hgetall(redis_keys.HTTP_STATS)  # type: ignore[assignment]
        return {field: float(value) for field, value in raw.items()}

    def _add(self, added: dict[str, float]) -> None:
        with self._lock:
            self._pending.update(added)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=_flush_while_alive, args=(weakref.ref(self),),
                    name=f"{self._app}-metrics", daemon=True,
                )  # fmt: skip
                self._flusher.start()


def _flush_while_alive(ref: weakref.ref[HttpMetrics]) -> None:
    """Flush every FLUSH_INTERVAL_S until the app that owns the sums is gone."""
    while True:
        time.sleep(FLUSH_INTERVAL_S)
        metrics = ref()
        if metrics is None:
            return
        try:
            metrics.flush()
        except Exception:  # never let the counting thread die for one bad write
            log.warning("could not write HTTP metrics", exc_info=True)
        del metrics


class CountResponses:
    """ASGI middleware: counts every HTTP answer by its status."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def counted(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._metrics.count_response(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, counted)
        except Exception:
            # Starlette's outermost middleware answers 500 for what nothing handled.
            if not started:
                self._metrics.count_response(500)
            raise


def metrics_of(app: Any) -> HttpMetrics:
    """The HttpMetrics that install_edge gave an app."""
    found: HttpMetrics = app.state.http_metrics
    return found
