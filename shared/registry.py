"""ModelRegistry: the best model of every succeeded job, and aliases to them, in Redis."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import redis
from pydantic import BaseModel, Field

from shared import keys
from shared.errors import NotFoundError

MODEL_ID_PATTERN = r"^[0-9a-f]{32}$"
# At most 31 characters, so that an alias can never be mistaken for a model id.
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,30}$"
MODEL_REF_PATTERN = r"^([0-9a-f]{32}|[a-z][a-z0-9_-]{0,30})$"
# The test metric two models are compared by, per task, and which way is better.
TEST_METRIC_OF_TASK = {
    "classification": ("test_accuracy", "max"),
    "regression": ("test_loss", "min"),
}


class ModelRecord(BaseModel):
    """What is known of a registered model: where it is and what it expects."""

    id: str
    job_id: str
    checkpoint_uri: str
    # Defaults: records written before regression existed are classifiers of "target".
    task: str = "classification"
    target: str = "target"
    config: dict[str, Any]
    metric: str
    mode: str
    validation_value: float
    test_metrics: dict[str, float]
    feature_names: list[str]
    classes: list[Any] = Field(description="Class labels; empty for regression.")
    created_at: float


RECORDS_CACHED = 256


class ModelRegistry:
    """Model id -> record. A model's id is the id of the job that made it."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        # A record never changes once registered, so one read per process is enough;
        # the predictor reads a record for every request.
        self._records: OrderedDict[str, ModelRecord] = OrderedDict()

    @classmethod
    def from_url(cls, url: str) -> ModelRegistry:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def ping(self) -> None:
        """Raise if Redis does not answer."""
        self._redis.ping()

    def register(self, record: ModelRecord) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.model(record.id), record.model_dump_json())
            pipe.zadd(keys.MODELS, {record.id: record.created_at})
            pipe.execute()

    def find(self, model_id: str) -> ModelRecord | None:
        record = self._records.get(model_id)
        if record is not None:
            self._records.move_to_end(model_id)
            return record
        raw = self._redis.get(keys.model(model_id))
        if not raw:
            return None
        record = ModelRecord.model_validate_json(raw)
        self._records[model_id] = record
        if len(self._records) > RECORDS_CACHED:
            self._records.popitem(last=False)
        return record

    def get(self, model_id: str) -> ModelRecord:
        record = self.find(model_id)
        if record is None:
            raise NotFoundError(f"no model with id {model_id!r}; GET /models lists the models")
        return record

    def recent(self, limit: int = 100) -> list[ModelRecord]:
        """The newest models first."""
        ids: list[str] = self._redis.zrevrange(keys.MODELS, 0, limit - 1)  # type: ignore[assignment]
        raws = self._redis.mget([keys.model(i) for i in ids]) if ids else []
        return [ModelRecord.model_validate_json(raw) for raw in raws if raw]

    # -- aliases -----------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        """Alias name -> model id."""
        return dict(self._redis.hgetall(keys.ALIASES))  # type: ignore[arg-type]

    def set_alias(self, name: str, model_id: str) -> None:
        """Point an alias at a model (promote it); NotFoundError for an unknown model."""
        self.get(model_id)
        self._redis.hset(keys.ALIASES, name, model_id)

    def delete_alias(self, name: str) -> None:
        if not self._redis.hdel(keys.ALIASES, name):
            raise NotFoundError(f"no alias {name!r}; GET /models/aliases lists them")

    def resolve(self, ref: str) -> str | None:
        """The model id a reference names: a model id as it is, an alias followed."""
        if len(ref) == 32:
            return ref
        model_id = self._redis.hget(keys.ALIASES, ref)
        return str(model_id) if model_id else None

    def promote_if_better(self, name: str, candidate: ModelRecord) -> bool:
        """Point ``name`` at ``candidate`` if its test metric beats the model the alias
        points at now (or nothing does). Atomic against concurrent promotions."""
        metric, mode = TEST_METRIC_OF_TASK[candidate.task]
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(keys.ALIASES)
                    current_id = pipe.hget(keys.ALIASES, name)
                    current = self.find(str(current_id)) if current_id else None
                    if current is not None and not _beats(candidate, current, metric, mode):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hset(keys.ALIASES, name, candidate.id)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue


def _beats(candidate: ModelRecord, current: ModelRecord, metric: str, mode: str) -> bool:
    mine, theirs = candidate.test_metrics.get(metric), current.test_metrics.get(metric)
    if mine is None or theirs is None:
        return theirs is None
    return mine > theirs if mode == "max" else mine < theirs
