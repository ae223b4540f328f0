"""ModelRegistry: the best model of every succeeded job, and aliases to them, in Redis."""

from __future__ import annotations

import json
import random
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from pydantic import BaseModel, Field, ValidationError

from shared import queue_scripts, redis_keys
from shared.errors import ConflictError, LeaseLostError, NotFoundError
from shared.index_pruning import prune_missing
from shared.redis_client import RedisStore
from shared.vocabulary import DEFAULT_TENANT, TEST_METRIC_OF_TASK, Subject

if TYPE_CHECKING:
    from shared.lease import Lease


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
    feature_names: list[str] = Field(description="The table's feature columns, in order.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Each feature column's role: numeric, categorical, datetime or ignore "
        "(empty for models trained before roles: every column numeric).",
    )
    classes: list[Any] = Field(description="Class labels; empty for regression.")
    created_at: float
    tenant: str = DEFAULT_TENANT

    def role_of(self, column: str) -> str:
        return self.columns.get(column, "numeric")


RECORDS_CACHED = 256
# A cached record is read again after this long, so that a model deleted through one
# predictor replica stops answering on the others within this time.
RECORD_FRESH_S = 30.0
# Ids read from the models index at a time.
INDEX_BATCH = 500


class ModelRegistry(RedisStore):
    """Model id -> record. A model's id is the id of the job that made it."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(client)
        # A record never changes once registered, but it may be deleted; the predictor
        # reads a record for every request. So records are cached with the time they
        # were read (time.monotonic()), and read again once RECORD_FRESH_S old.
        self._records: OrderedDict[str, tuple[ModelRecord, float]] = OrderedDict()
        self._register = client.register_script(queue_scripts.REGISTER)

    def ping(self) -> None:
        """Raise if Redis does not answer."""
        self._redis.ping()

    def register(self, record: ModelRecord, lease: Lease | None = None) -> None:
        """Store a model. With the ``lease`` of the driver that ran its job, only while
        that driver's claim holds (LeaseLostError otherwise)."""
        if lease is None:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(redis_keys.model(record.id), record.model_dump_json())
                pipe.zadd(redis_keys.MODELS, {record.id: record.created_at})
                pipe.execute()
            return
        registered = self._register(
            keys=[redis_keys.job(lease.job_id), redis_keys.model(record.id), redis_keys.MODELS],
            args=[lease.token, record.id, record.model_dump_json(), repr(record.created_at)],
        )
        if not registered:
            raise _lease_lost(lease, "register its model")

    def find(self, model_id: str) -> ModelRecord | None:
        cached = self._records.get(model_id)
        if cached is not None and time.monotonic() - cached[1] < RECORD_FRESH_S:
            self._records.move_to_end(model_id)
            return cached[0]
        raw = self._redis.get(redis_keys.model(model_id))
        if not raw:
            self.forget(model_id)
            return None
        record = ModelRecord.model_validate_json(raw)
        self._records[model_id] = (record, time.monotonic())
        self._records.move_to_end(model_id)
        if len(self._records) > RECORDS_CACHED:
            self._records.popitem(last=False)
        return record

    def cached(self, model_id: str) -> ModelRecord | None:
        """The record if this process read it less than RECORD_FRESH_S ago, else None;
        never asks Redis (so an async handler may call it)."""
        cached = self._records.get(model_id)
        if cached is not None and time.monotonic() - cached[1] < RECORD_FRESH_S:
            return cached[0]
        return None

    def forget(self, model_id: str) -> None:
        """Drop a model's record from this process's cache: the next read asks Redis."""
        self._records.pop(model_id, None)

    def get(self, model_id: str) -> ModelRecord:
        record = self.find(model_id)
        if record is None:
            raise _unknown_model(model_id)
        return record

    def recent(self, limit: int = 100, tenant: str | None = None) -> list[ModelRecord]:
        """The newest models first: every tenant's, or one tenant's."""
        found: list[ModelRecord] = []
        for record in self.records():
            if tenant in (None, record.tenant):
                found.append(record)
                if len(found) == limit:
                    break
        return found

    def records(self) -> Iterator[ModelRecord]:
        """Every model's record, the newest first. The ids are read at once (a model
        registered or deleted meanwhile cannot shift the rest out of a page); the
        records INDEX_BATCH at a time."""
        ids: list[str] = self._redis.zrevrange(redis_keys.MODELS, 0, -1)  # type: ignore[assignment]
        for start in range(0, len(ids), INDEX_BATCH):
            batch = ids[start : start + INDEX_BATCH]
            for raw in self._redis.mget([redis_keys.model(i) for i in batch]):
                record = _record_or_none(raw)
                if record is not None:
                    yield record

    def delete(self, model_id: str, tenant: str = DEFAULT_TENANT) -> ModelRecord:
        """Remove a model's record and answer it. NotFoundError if there is none;
        ConflictError, naming the alias, while an alias points at it (``tenant``'s
        aliases are named as that tenant uses them). Atomic against an alias being
        pointed at the model meanwhile. Its files are the caller's to remove."""
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(redis_keys.ALIASES, redis_keys.ALIAS_SPLITS)
                    pipe.watch(redis_keys.model(model_id))
                    raw = pipe.get(redis_keys.model(model_id))
                    if not raw:
                        pipe.unwatch()
                        self.forget(model_id)
                        raise _unknown_model(model_id)
                    aliases: dict[str, str] = pipe.hgetall(redis_keys.ALIASES)  # type: ignore[assignment]
                    splits: dict[str, str] = pipe.hgetall(redis_keys.ALIAS_SPLITS)  # type: ignore[assignment]
                    pointing = [field for field, target in aliases.items() if target == model_id]
                    pointing += [f for f, split in splits.items() if model_id in json.loads(split)]
                    if pointing:
                        pipe.unwatch()
                        raise _still_aliased(model_id, pointing[0], tenant)
                    pipe.multi()
                    pipe.delete(redis_keys.model(model_id))
                    pipe.zrem(redis_keys.MODELS, model_id)
                    pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self.forget(model_id)
        return ModelRecord.model_validate_json(raw)

    def prune_index(self, batch_size: int = INDEX_BATCH) -> int:
        """Remove ids whose record no longer exists from the models index, reading it
        ``batch_size`` at a time; how many were removed."""
        return prune_missing(self._redis, redis_keys.MODELS, redis_keys.model, batch_size)

    # -- aliases -----------------------------------------------------------------------

    # Each tenant names its own aliases: "prod" of one tenant is not another's. The
    # default tenant's are stored under their bare name, others' as "tenant/name" (an
    # alias cannot hold "/").

    def aliases(self, tenant: str = DEFAULT_TENANT) -> dict[str, str]:
        """A tenant's aliases: name -> model id."""
        raw: dict[str, str] = self._redis.hgetall(redis_keys.ALIASES)  # type: ignore[assignment]
        prefix = "" if tenant == DEFAULT_TENANT else f"{tenant}/"
        return {
            field.removeprefix(prefix): model_id
            for field, model_id in raw.items()
            if (field.startswith(prefix) and "/" not in field.removeprefix(prefix))
        }

    def set_alias(self, name: str, model_id: str, tenant: str = DEFAULT_TENANT) -> None:
        """Point a tenant's alias at a model (promote it: all of its traffic); NotFoundError
        for an unknown model. Atomic against the model being deleted meanwhile."""
        self.split_alias(name, {model_id: 1.0}, tenant)

    def split_alias(
        self, name: str, weights: dict[str, float], tenant: str = DEFAULT_TENANT
    ) -> dict[str, float]:
        """Point a tenant's alias at models by weight (a canary: ``{old: 0.9, new: 0.1}``):
        each prediction by the alias goes to one of them, drawn by weight. The alias's
        model, for what takes one (exports, batch jobs, listings), is the one with the
        most weight. NotFoundError for an unknown model; atomic against a model being
        deleted meanwhile. Returns the weights, summing to 1."""
        total = sum(weights.values())
        shares = {model_id: weight / total for model_id, weight in weights.items()}
        primary = max(shares, key=lambda model_id: shares[model_id])
        field = _alias_field(tenant, name)
        with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(*(redis_keys.model(model_id) for model_id in shares))
                    for model_id in shares:
                        if not pipe.exists(redis_keys.model(model_id)):
                            pipe.unwatch()
                            self.forget(model_id)
                            raise _unknown_model(model_id)
                    pipe.multi()
                    pipe.hset(redis_keys.ALIASES, field, primary)
                    if len(shares) > 1:
                        pipe.hset(redis_keys.ALIAS_SPLITS, field, json.dumps(shares))
                    else:
                        pipe.hdel(redis_keys.ALIAS_SPLITS, field)
                    pipe.execute()
                    return shares
                except redis.WatchError:
                    continue

    def alias_weights(self, name: str, tenant: str = DEFAULT_TENANT) -> dict[str, float]:
        """The models an alias sends predictions to, by weight; NotFoundError if none."""
        primary, split = self._alias_entry(_alias_field(tenant, name))
        if not primary:
            raise NotFoundError.no(Subject.ALIAS, name)
        return json.loads(split) if split else {str(primary): 1.0}

    def _alias_entry(self, field: str) -> tuple[str | None, str | None]:
        """An alias's model, and its split (JSON) if it has one, in one round trip."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hget(redis_keys.ALIASES, field)
            pipe.hget(redis_keys.ALIAS_SPLITS, field)
            primary, split = pipe.execute()
        return primary, split

    def delete_alias(self, name: str, tenant: str = DEFAULT_TENANT) -> None:
        field = _alias_field(tenant, name)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(redis_keys.ALIASES, field)
            pipe.hdel(redis_keys.ALIAS_SPLITS, field)
            deleted, _ = pipe.execute()
        if not deleted:
            raise NotFoundError.no(Subject.ALIAS, name)

    def resolve(self, ref: str, tenant: str = DEFAULT_TENANT, draw: bool = False) -> str | None:
        """The model id a reference names: a model id as it is, a tenant's alias followed.
        With ``draw`` (a prediction), an alias that splits its traffic names one of its
        models, drawn by weight; without, the one with the most weight."""
        if len(ref) == 32:
            return ref
        field = _alias_field(tenant, ref)
        if not draw:
            model_id = self._redis.hget(redis_keys.ALIASES, field)
            return str(model_id) if model_id else None
        model_id, split = self._alias_entry(field)
        if split:
            shares: dict[str, float] = json.loads(split)
            return random.choices(list(shares), weights=list(shares.values()))[0]
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
                    pipe.watch(redis_keys.ALIASES)
                    if lease is not None:
                        pipe.watch(redis_keys.job(lease.job_id))
                        if pipe.hget(redis_keys.job(lease.job_id), "lease") != lease.token:
                            pipe.unwatch()
                            raise _lease_lost(lease, "move the alias")
                    pipe.watch(redis_keys.model(candidate.id))
                    if not pipe.exists(redis_keys.model(candidate.id)):  # deleted meanwhile
                        pipe.unwatch()
                        return False
                    field = _alias_field(candidate.tenant, name)
                    current_id = pipe.hget(redis_keys.ALIASES, field)
                    current = self.find(str(current_id)) if current_id else None
                    if current is not None and not _beats(candidate, current, metric, mode):
                        pipe.unwatch()
                        return False
                    pipe.multi()
                    pipe.hset(redis_keys.ALIASES, field, candidate.id)
                    pipe.hdel(redis_keys.ALIAS_SPLITS, field)  # the better model takes all
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue


def _lease_lost(lease: Lease, what: str) -> LeaseLostError:
    lease.lost.set()
    return LeaseLostError(
        f"job {lease.job_id}: claim {lease.token} has ended; this driver may not {what}"
    )


def _unknown_model(model_id: str) -> NotFoundError:
    return NotFoundError.no(Subject.MODEL, model_id)


def _still_aliased(model_id: str, field: str, tenant: str) -> ConflictError:
    """Why a model cannot be deleted yet: the alias stored as ``field`` points at it."""
    owner, _, name = field.rpartition("/")
    owner = owner or DEFAULT_TENANT
    if owner != tenant:
        return ConflictError(
            f"alias {name!r} of tenant {owner!r} points at model {model_id}; that tenant "
            "must move it to another model or delete it first"
        )
    return ConflictError(
        f"alias {name!r} points at model {model_id}; move it to another model or delete it first",
        subject=Subject.ALIAS,
        ref=name,
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
