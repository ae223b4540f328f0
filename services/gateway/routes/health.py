"""GET /healthz and GET /livez."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from services.edge.deps import CallerDep
from services.gateway.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    live_drivers: int = Field(description="Drivers whose heartbeat is within its lease.")
    drivers: list[str] | None = Field(
        description="Their ids (host-pid-random): for admin keys, and on a stack without "
        "keys (which answers on this machine only); null for anyone else."
    )
    queued_jobs: int
    queued_by_priority: dict[str, int]
    running_jobs: int
    max_instances: int = Field(
        description="Rows one POST /models/{id}/predict takes (TUNEFLEET_MAX_INSTANCES); "
        "score more as a batch job (POST /models/{id}/batch)."
    )


@router.get("/livez")
def livez() -> dict[str, str]:
    """The gateway process answers; touches nothing else (a liveness probe)."""
    return {"status": "ok"}


@router.get(
    "/healthz",
    responses={503: {"description": "Redis is unreachable; Retry-After says when to ask again."}},
)
def healthz(services: ServicesDep, caller: CallerDep) -> Health:
    """The gateway is up and reaches Redis: live drivers, queued and running jobs.

    Answers without a key (a health probe); host names and process ids only to admins.
    """
    depths = services.jobs.queue_depths()
    drivers = services.jobs.drivers.live()
    return Health(
        status="ok",
        live_drivers=len(drivers),
        drivers=drivers if caller is not None and caller.admin else None,
        queued_jobs=sum(depths.values()),
        queued_by_priority=depths,
        running_jobs=services.jobs.running_count(),
        max_instances=services.settings.max_instances,
    )
