"""FastAPI dependencies of the gateway, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Request

from shared.data import DatasetStore
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings

# (model id, feature matrix) -> {"predictions": [...], "probabilities": [[...]]}
PredictFn = Callable[[str, np.ndarray], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Services:
    """What the routes use, built once per gateway replica."""

    settings: Settings
    jobs: JobStore
    registry: ModelRegistry
    datasets: DatasetStore
    predict: PredictFn


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]
