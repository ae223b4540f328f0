"""FastAPI dependencies of the gateway, as Annotated aliases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from services.gateway.stream_slots import StreamSlots
from shared.capacity import CapacityStore
from shared.data import DatasetStore
from shared.jobs import JobStore
from shared.results import EventFeed, ResultStore
from shared.settings import Settings


@dataclass(frozen=True)
class Services:
    """What the routes use, built once per gateway replica."""

    settings: Settings
    jobs: JobStore
    results: ResultStore
    events: EventFeed
    capacity: CapacityStore
    streams: StreamSlots

    def datasets_of(self, tenant: str) -> DatasetStore:
        """A tenant's uploaded datasets (each tenant has its own folder)."""
        return DatasetStore(self.settings.datasets_of(tenant))


async def _services(request: Request) -> Services:
    # async: FastAPI runs a plain function dependency in its thread pool, a hop that cost
    # a request more than what this does.
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
