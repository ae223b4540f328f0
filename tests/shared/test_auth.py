"""API keys, and what keeps tenants apart in the job store and the registry."""

from __future__ import annotations

import pytest
import redis

from shared import redis_keys
from shared.auth import KeyStore
from shared.errors import InvalidInputError, TooManyJobsError
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import QueuePolicy
from tests.helpers.factories import record, spec


def test_a_key_resolves_to_its_tenant_and_only_its_digest_is_stored(
    redis_client: redis.Redis,
) -> None:
    store = KeyStore(redis_client)
    assert not store.enabled()
    key = store.create("team-a")
    admin = store.create("ops", admin=True)
    assert store.enabled()
    found = store.resolve(key)
    assert found is not None and found.tenant == "team-a" and not found.admin
    assert found.may_see("team-a") and not found.may_see("team-b")
    ops = store.resolve(admin)
    assert ops is not None and ops.admin and ops.may_see("team-b")
    stored = str(redis_client.hgetall(redis_keys.API_KEYS))
    assert key not in stored and admin not in stored
    assert store.resolve(key + "x") is None
    assert store.revoke(key) and store.resolve(key) is None


def test_a_tenant_name_is_checked(redis_client: redis.Redis) -> None:
    with pytest.raises(InvalidInputError, match="tenant"):
        KeyStore(redis_client).create("../etc")


def test_each_tenant_has_its_own_limit_of_active_jobs(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client, QueuePolicy.default(max_active_per_tenant=2))
    first, _ = store.enqueue(spec(), tenant="a")
    store.enqueue(spec(), tenant="a")
    with pytest.raises(TooManyJobsError, match="tenant a has 2 queued and running jobs"):
        store.enqueue(spec(), tenant="a")
    store.enqueue(spec(), tenant="b")  # another tenant is not held back
    store.cancel(first)  # once one ends, there is room again
    store.enqueue(spec(), tenant="a")
    assert {j.tenant for j in store.recent(tenant="a")} == {"a"}
    assert len(store.recent(tenant="a")) == 3 and len(store.recent()) == 4


def test_idempotency_keys_are_per_tenant(redis_client: redis.Redis) -> None:
    store = JobStore(redis_client)
    mine, created = store.enqueue(spec(), "key-1", tenant="a")
    again, created_again = store.enqueue(spec(), "key-1", tenant="a")
    theirs, created_theirs = store.enqueue(spec(), "key-1", tenant="b")
    assert created and not created_again and again == mine
    assert created_theirs and theirs != mine


def test_aliases_are_per_tenant(redis_client: redis.Redis) -> None:
    registry = ModelRegistry(redis_client)
    ours, theirs = record("a" * 32, 0.9), record("b" * 32, 0.8).model_copy(update={"tenant": "t"})
    registry.register(ours)
    registry.register(theirs)
    registry.set_alias("prod", ours.id)
    registry.set_alias("prod", theirs.id, tenant="t")
    assert registry.resolve("prod") == ours.id
    assert registry.resolve("prod", tenant="t") == theirs.id
    assert registry.aliases() == {"prod": ours.id}
    assert registry.aliases("t") == {"prod": theirs.id}
    assert [m.id for m in registry.recent(tenant="t")] == [theirs.id]


def test_one_unreadable_model_record_hides_no_other(redis_client: redis.Redis) -> None:
    registry = ModelRegistry(redis_client)
    good = record("a" * 32, 0.9)
    registry.register(good)
    redis_client.set(redis_keys.model("b" * 32), '{"id": "b", "validation_value": null}')
    redis_client.zadd(redis_keys.MODELS, {"b" * 32: 1e12})
    assert [m.id for m in registry.recent()] == [good.id]
