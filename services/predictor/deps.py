"""FastAPI dependencies of the predictor, as Annotated aliases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from services.predictor.model_files import ImportedModelFiles
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.settings import Settings

# (model id, raw columns by name) -> {"predictions": [...], "probabilities": [[...]] or None}
PredictFn = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class ModelServices:
    """What the routes use, built once per predictor replica."""

    settings: Settings
    jobs: JobStore
    registry: ModelRegistry
    predict: PredictFn
    model_files: ImportedModelFiles


async def _services(request: Request) -> ModelServices:
    # async: FastAPI runs a plain function dependency in its thread pool, a hop that cost
    # a request more than what this does.
    services: ModelServices = request.app.state.services
    return services


ModelServicesDep = Annotated[ModelServices, Depends(_services)]


async def _oip_services(request: Request) -> ModelServices:
    services: ModelServices = request.app.state.oip
    return services


# What the Open Inference Protocol's routes use, in the predictor's app and the gateway's.
OipServicesDep = Annotated[ModelServices, Depends(_oip_services)]
