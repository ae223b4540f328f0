"""Pruning the job and model indexes of records that have expired, in a real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from shared import redis_keys
from shared.index_pruning import prune_job_indexes
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import QueuePolicy
from shared.spec import JobSpec
from tests.helpers.factories import model_of

SPEC = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}})


def test_expired_jobs_leave_every_job_index(redis_client: redis.Redis) -> None:
    # Records of ended jobs expire one second after they end.
    jobs = JobStore(redis_client, QueuePolicy.default(retention_s=1))
    live: set[str] = set()
    ended: set[str] = set()
    # More than a batch, and more than Redis keeps in its compact encoding (128).
    for number in range(300):
        tenant = "alpha" if number % 3 else "beta"
        job_id, _ = jobs.enqueue(SPEC, tenant=tenant)
        (live if number % 6 == 0 else ended).add(job_id)
    for job_id in ended:
        jobs.cancel(job_id)
    time.sleep(1.5)
    assert all(not jobs.exists(job_id) for job_id in ended)
    assert redis_client.zcard(redis_keys.JOBS) == 300  # the records went, their entries stayed

    pruned = prune_job_indexes(redis_client, batch_size=50)

    assert pruned.jobs == len(ended) and pruned.tenant_jobs == len(ended)
    assert set(redis_client.zrange(redis_keys.JOBS, 0, -1)) == live
    for tenant in ("alpha", "beta"):
        listed = {job.id for job in jobs.recent(limit=1000, tenant=tenant)}
        assert set(redis_client.zrange(redis_keys.tenant_jobs(tenant), 0, -1)) == listed
        assert set(redis_client.smembers(redis_keys.tenant_active(tenant))) <= listed
    assert {job.id for job in jobs.recent(limit=1000)} == live
    # Nothing more to prune: every entry left names a record.
    assert prune_job_indexes(redis_client).total == 0


def test_a_model_record_that_vanished_leaves_the_models_index(redis_client: redis.Redis) -> None:
    registry = ModelRegistry(redis_client)
    for letter in "abc":
        registry.register(model_of(letter * 32, Path("/nowhere")))
    # A record removed by hand, outside the registry.
    redis_client.delete(redis_keys.model("b" * 32))

    assert registry.prune_index(batch_size=1) == 1
    assert set(redis_client.zrange(redis_keys.MODELS, 0, -1)) == {"a" * 32, "c" * 32}
    assert [m.id for m in registry.recent()] == ["c" * 32, "a" * 32]
