"""ModelRegistry: the best model of every succeeded job, in Redis."""

from __future__ import annotations

from typing import Any

import redis
from pydantic import BaseModel, Field

from shared import keys
from shared.errors import NotFoundError


class ModelRecord(BaseModel):
    """What is known of a registered model: where it is and what it expects."""

    id: str
    job_id: str
    checkpoint_uri: str
    task: str
    target: str
    config: dict[str, Any]
    metric: str
    mode: str
    validation_value: float
    test_metrics: dict[str, float]
    feature_names: list[str]
    classes: list[Any] = Field(description="Class labels; empty for regression.")
    created_at: float


class ModelRegistry:
    """Model id -> record. A model's id is the id of the job that made it."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    @classmethod
    def from_url(cls, url: str) -> ModelRegistry:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def register(self, record: ModelRecord) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.model(record.id), record.model_dump_json())
            pipe.zadd(keys.MODELS, {record.id: record.created_at})
            pipe.execute()

    def find(self, model_id: str) -> ModelRecord | None:
        raw = self._redis.get(keys.model(model_id))
        return ModelRecord.model_validate_json(raw) if raw else None

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
