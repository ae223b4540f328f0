"""Server-Sent Events for one job, from its event stream in Redis, and the count of
streams each tenant holds open."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import TYPE_CHECKING

from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from services.edge.errors import REDIS_RETRY_AFTER_S
from services.gateway.stream_slots import StreamSlots
from shared.redis_client import UNREACHABLE
from shared.results import JOB_CHANGED, TRIAL_RESULT

if TYPE_CHECKING:
    from services.gateway.deps import Services

# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15

log = logging.getLogger(__name__)


class EventStreamResponse(StreamingResponse):
    """A text/event-stream that holds one of its tenant's slots until it ends, however
    it ends: the job's final state, the client gone (Starlette cancels the stream), or
    an error."""

    def __init__(self, content: AsyncIterator[str], slots: StreamSlots, tenant: str) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )
        self._slots = slots
        self._tenant = tenant

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._slots.give_back(self._tenant)


async def job_event_stream(
    services: Services, job_id: str, last_event_id: str | None, admin: bool
) -> AsyncIterator[str]:
    """``job`` first (the job as it is now), then ``trial`` and ``job`` events as they
    happen; ends once a ``job`` event shows a final state, after
    ``event_stream_idle_s`` of keep-alives only, or when Redis goes away (a client
    reconnects with Last-Event-ID)."""
    try:
        async with aclosing(_job_events(services, job_id, last_event_id, admin)) as chunks:
            async for chunk in chunks:
                yield chunk
    except UNREACHABLE as exc:
        # The answer has started, so no 503 can be sent: end the stream, with a comment
        # line for whoever reads it raw.
        log.warning("the event stream of job %s ends: Redis is unreachable: %r", job_id, exc)
        yield f": Redis is unreachable; reconnect in {REDIS_RETRY_AFTER_S} s with Last-Event-ID\n\n"


async def _job_events(
    services: Services, job_id: str, last_event_id: str | None, admin: bool
) -> AsyncGenerator[str, None]:
    idle_s = services.settings.event_stream_idle_s
    after_id = last_event_id or await services.events.last_id(job_id)
    # Read after taking the position: nothing that happens in between is missed.
    job = await run_in_threadpool(services.jobs.get, job_id)
    yield _event("job", job.seen_by(admin).model_dump_json(), after_id)
    if job.state.is_terminal():
        return
    sent_at = time.monotonic()
    while True:
        quiet_s = time.monotonic() - sent_at
        if quiet_s >= idle_s:
            yield f": nothing new for {idle_s:g} s; reconnect with Last-Event-ID to go on\n\n"
            return
        wait_s = min(KEEPALIVE_S, idle_s - quiet_s)
        events = await services.events.after(job_id, after_id, wait_s=wait_s)
        if not events:
            yield ": keep-alive\n\n"
            continue
        sent_at = time.monotonic()
        changed = False
        # One write for what one read brought: a busy job's stream is a send per read,
        # not a send per trial's epoch.
        batch = []
        for event_id, kind, data in events:
            after_id = event_id
            if kind == TRIAL_RESULT:
                batch.append(_event("trial", data, event_id))
            elif kind == JOB_CHANGED:
                changed = True
        if changed:  # one read of the job for a burst of changes
            job = await run_in_threadpool(services.jobs.get, job_id)
            batch.append(_event("job", job.seen_by(admin).model_dump_json(), after_id))
        if batch:
            yield "".join(batch)
        if changed and job.state.is_terminal():
            return


def _event(kind: str, data: str, event_id: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"
