"""Pruning of Redis indexes whose entries name records that have expired.

A finished job's record expires after the queue's retention, but the indexes that
name it (the sorted set of every job, each tenant's sorted set of jobs and set of
active jobs) cannot expire member by member. JobStore.recent drops the entries it
happens to read; a tenant that never lists its jobs, or a job past the first page,
would stay forever. This removes them all, reading each index a batch at a time
(ZSCAN, SSCAN), so that a large index is never loaded at once.

A record never comes back once gone (ids are never reused), and a job's record and its
index entries are written together by one script, so an entry whose record is missing
can be removed without a transaction: nothing can make it valid again meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from shared import redis_keys

BATCH = 500


@dataclass(frozen=True)
class PrunedIndexes:
    """How many entries were removed from each kind of job index."""

    jobs: int
    tenant_jobs: int
    tenant_active: int

    @property
    def total(self) -> int:
        return self.jobs + self.tenant_jobs + self.tenant_active


def prune_job_indexes(client: redis.Redis, batch_size: int = BATCH) -> PrunedIndexes:
    """Remove the jobs whose records have expired from every job index: every job, and
    each tenant's jobs and active jobs."""

    def each(pattern: str, kind: str) -> int:
        indexes = client.scan_iter(match=pattern, count=batch_size, _type=kind)
        return sum(prune_missing(client, index, redis_keys.job, batch_size) for index in indexes)

    return PrunedIndexes(
        jobs=prune_missing(client, redis_keys.JOBS, redis_keys.job, batch_size),
        tenant_jobs=each(redis_keys.TENANT_JOBS_PATTERN, "zset"),
        tenant_active=each(redis_keys.TENANT_ACTIVE_PATTERN, "set"),
    )


def prune_missing(
    client: redis.Redis,
    index: str,
    record_key: Callable[[str], str],
    batch_size: int = BATCH,
) -> int:
    """Remove from ``index`` (a sorted set or a set of ids) every id whose record,
    ``record_key(id)``, no longer exists; how many were removed."""
    kind = _text(client.type(index))
    if kind not in ("zset", "set"):
        return 0  # gone (emptied) meanwhile, or not an index
    removed = 0
    cursor = 0
    while True:
        if kind == "zset":
            cursor, entries = client.zscan(index, cursor, count=batch_size)
            ids = [_text(member) for member, _ in entries]
        else:
            cursor, members = client.sscan(index, cursor, count=batch_size)
            ids = [_text(member) for member in members]
        if ids:
            with client.pipeline(transaction=False) as pipe:
                for record_id in ids:
                    pipe.exists(record_key(record_id))
                present = pipe.execute()
            gone = [i for i, flag in zip(ids, present, strict=True) if not flag]
            if gone:
                remove = client.zrem if kind == "zset" else client.srem
                removed += int(remove(index, *gone))
        if int(cursor) == 0:
            return removed


def _text(value: Any) -> str:
    """A reply as text, whether or not the client decodes replies."""
    return value.decode() if isinstance(value, bytes) else str(value)
