"""GET /healthz."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.gateway.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    drivers: list[str]
    queued_jobs: int
    queued_by_priority: dict[str, int]
    running_jobs: int


@router.get("/livez")
def livez() -> dict[str, str]:
    """The gateway process answers; touches nothing else (a liveness probe)."""
    return {"status": "ok"}


@router.get("/healthz")
def healthz(services: ServicesDep) -> Health:
    """The gateway is up and reaches Redis: live drivers, queued and running jobs."""
    depths = services.jobs.queue_depths()
    return Health(
        status="ok",
        drivers=services.jobs.live_drivers(),
        queued_jobs=sum(depths.values()),
        queued_by_priority=depths,
        running_jobs=services.jobs.running_count(),
    )
