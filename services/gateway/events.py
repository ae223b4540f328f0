"""Server-Sent Events for one job, from its event stream in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.gateway.deps import Services
from shared.results import JOB_CHANGED, TRIAL_RESULT

# A comment line this often keeps proxies from closing a quiet stream.
KEEPALIVE_S = 15


async def job_event_stream(
    services: Services, job_id: str, last_event_id: str | None
) -> AsyncIterator[str]:
    """``job`` first (the job as it is now), then ``trial`` and ``job`` events as they
    happen; ends once a ``job`` event shows a final state."""
    after_id = last_event_id or await services.events.last_id(job_id)
    # Read after taking the position: nothing that happens in between is missed.
    job = services.jobs.get(job_id)
    yield _event("job", job.model_dump_json(), after_id)
    if job.state.is_terminal():
        return
    while True:
        events = await services.events.after(job_id, after_id, wait_s=KEEPALIVE_S)
        if not events:
            yield ": keep-alive\n\n"
            continue
        changed = False
        for event_id, kind, data in events:
            after_id = event_id
            if kind == TRIAL_RESULT:
                yield _event("trial", data, event_id)
            elif kind == JOB_CHANGED:
                changed = True
        if changed:  # one read of the job for a burst of changes
            job = services.jobs.get(job_id)
            yield _event("job", job.model_dump_json(), after_id)
            if job.state.is_terminal():
                return


def _event(kind: str, data: str, event_id: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {data}\n\n"
