"""ModelRegistry: the best model of every succeeded job, and aliases to them, in Redis."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import redis
from pydantic import BaseModel, Field, ValidationError

from shared import keys, queue_scripts
from shared.auth import DEFAULT_TENANT
from shared.errors import LeaseLostError, NotFoundError

if TYPE_CHECKING:
    from shared.jobs import Lease

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
    tenant: str = DEFAULT_TENANT


RECORDS_CACHED = 256


class ModelRegistry:
    """Model id -> record. A model's id is the id of the job that made it."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        # A record never changes once registered, so one read per process is enough;
        # the predictor reads a record for every request.
        self._records: OrderedDict[str, ModelRecord] = OrderedDict()
        self._register = client.register_script(queue_scripts.REGISTER)

    @classmethod
    def from_url(cls, url: str) -> ModelRegistry:
        return cls(redis.Redis.from_url(url, decode_responses=True))

    def ping(self) -> None:
        """Raise if Redis does not answer."""
        self._redis.ping()

    def register(self, record: ModelRecord, lease: Lease | None = None) -> None:
        """Store a model. With the ``lease`` of the driver that ran its job, only while
        that driver's claim holds (LeaseLostError otherwise)."""
        if lease is None:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(keys.model(record.id), record.model_dump_json())
                pipe.zadd(keys.MODELS, {record.id: record.created_at})
                pipe.execute()
            return
        registered = self._register(
            keys=[keys.job(lease.job_id), keys.model(record.id), keys.MODELS],
            args=[lease.token, record.id, record.model_dump_json(), repr(record.created_at)],
        )
        if not registered:
            raise _lease_lost(lease, "register its model")

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

    def recent(self, limit: int = 100, tenant: str | None = None) -> list[ModelRecord]:
        """The newest models first: every tenant's, or one tenant's."""
        ids: list[str] = self._redis.zrevrange(keys.MODELS, 0, -1)  # type: ignore[assignment]
        found: list[ModelRecord] = []
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            for raw in self._redis.mget([keys.model(i) for i in batch]):
                record = _record_or_none(raw)
                if record is not None and tenant in (None, record.tenant):
                    found.append(record)
                    if len(found) == limit:
                        return found
        return found

    # -- aliases -----------------------------------------------------------------------

    # Each tenant names its own aliases: "prod" of one tenant is not another's. The
    # default tenant's are stored under their bare name, others' as "tenant/name" (an
    # alias cannot hold "/").

    def aliases(self, tenant: str = DEFAULT_TENANT) -> dict[str, str]:
        """A tenant's aliases: name -> model id."""
        raw: dict[str, str] = self._redis.hgetall(keys.ALIASES)  # type: ignore[assignment]
        prefix = "" if tenant == DEFAULT_TENANT else f"{tenant}/"
        return {
            field.removeprefix(prefix): model_id
            for field, model_id in raw.items()
            if (field.startswith(prefix) and "/" not in field.removeprefix(prefix))
        }

    def set_alias(self, name: str, model_id: str, tenant: str = DEFAULT_TENANT) -> None:
        """Point a tenant's alias at a model (promote it); NotFoundError for an unknown
        model."""
        self.get(model_id)
        self._redis.hset(keys.ALIASES, _alias_field(tenant, name), model_id)

    def delete_alias(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        if not self._redis.hdel(keys.ALIASES, _alias_field(tenant, name)):
            raise NotFoundError(f"no alias {name!r}; GET /models/aliases lists them")

    def resolve(self, ref: str, tenant: str = DEFAULT_TENANT) -> str | None:
        """The model id a reference names: a model id as it is, a tenant's alias followed."""
        if len(ref) == 32:
            return ref
        model_id = self._redis.hget(keys.ALIASES, _alias_field(tenant, ref))
        return str(model_id) if model_id else None

    def promote_if_better(
        self, name: str, candidate: ModelRecord, lease: Lease | None = None
    ) -> bool:
        """Point ``name`` at ``candidate`` if its test metric beats the model the alias
        points at now (or nothing does). Atomic against concurrent promotions and, with
        the ``lease`` of the driver that ran the job, against that claim ending."""
        metric, mode = TEST_METRIC_OF_TASK[candidate.task]
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(keys.ALIASES)
                    if lease is not None:
                        pipe.watch(keys.job(lease.job_id))
                        if pipe.hget(keys.job(lease.job_id), "lease") != lease.token:
                            pipe.unwatch()
                            raise _lease_lost(lease, "move the alias")
                    field = _alias_field(candidate.tenant, name)
                    current_id = pipe.hget(keys.ALIASES, field)
                    current = self.find(str(current_id)) if current_id else None
                    if current is not None and not _beats(candidate, current, metric, mode):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hset(keys.ALIASES, field, candidate.id)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue


def _lease_lost(lease: Lease, what: str) -> LeaseLostError:
    lease.lost.set()
    return LeaseLostError(
        f"job {lease.job_id}: claim {lease.token} has ended; this driver may not {what}"
    )


def _record_or_none(raw: Any) -> ModelRecord | None:
    """A stored record; None if it is gone or cannot be read (one bad record must not
    hide every other model)."""
    if not raw:
        return None
    try:
        return ModelRecord.model_validate_json(raw)
    except ValidationError:
        return None


def _alias_field(tenant: str, name: str) -> str:
    return name if tenant == DEFAULT_TENANT else f"{tenant}/{name}"


def _beats(candidate: ModelRecord, current: ModelRecord, metric: str, mode: str) -> bool:
    mine, theirs = candidate.test_metrics.get(metric), current.test_metrics.get(metric)
    if mine is None or theirs is None:
        return theirs is None
    return mine > theirs if mode == "max" else mine < theirs
