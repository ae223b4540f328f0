"""GET /healthz."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from services.gateway.deps import ServicesDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    queued_jobs: int
    running_jobs: int


@router.get("/healthz")
def healthz(services: ServicesDep) -> Health:
    """The gateway is up and reaches Redis; how many jobs wait and run."""
    return Health(
        status="ok",
        queued_jobs=services.jobs.queue_depth(),
        running_jobs=services.jobs.running_count(),
    )
