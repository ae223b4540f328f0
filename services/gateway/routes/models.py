"""/models: registered models, and predictions from them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from services.gateway.deps import ServicesDep
from shared.errors import ConflictError, PayloadTooLargeError
from shared.features import instances_to_matrix
from shared.jobs import JOB_ID_PATTERN
from shared.registry import ModelRecord

router = APIRouter(prefix="/models", tags=["models"])

ModelId = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, description="The id of the job that made the model.")
]


class PredictRequest(BaseModel):
    instances: list[dict[str, Any] | list[Any]] = Field(
        description="Rows as {feature: value} objects, or lists of values in feature order."
    )


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="Class labels, or values for regression.")
    probabilities: list[list[float]] | None = Field(
        description="Per class, in the order of model.classes; null for regression."
    )
    model: ModelRecord


@router.get("")
def list_models(services: ServicesDep) -> list[ModelRecord]:
    """The newest models first."""
    return services.registry.recent()


@router.get("/{model_id}")
def get_model(model_id: ModelId, services: ServicesDep) -> ModelRecord:
    return _model(model_id, services)


@router.post("/{model_id}/predict")
async def predict(
    model_id: ModelId, request: PredictRequest, services: ServicesDep
) -> PredictResponse:
    """Predict with a job's best model: classes and their probabilities, or values."""
    record = _model(model_id, services)
    limit = services.settings.max_instances
    if len(request.instances) > limit:
        raise PayloadTooLargeError(
            f"{len(request.instances)} instances in one request; at most {limit} are allowed"
        )
    matrix = instances_to_matrix(request.instances, record.feature_names)
    answer = await services.predict(model_id, matrix)
    return PredictResponse(
        predictions=answer["predictions"], probabilities=answer["probabilities"], model=record
    )


def _model(model_id: str, services: ServicesDep) -> ModelRecord:
    record = services.registry.find(model_id)
    if record is not None:
        return record
    if services.jobs.exists(model_id):
        job = services.jobs.get(model_id)
        reason = f": {job.error}" if job.error else ""
        raise ConflictError(
            f"job {model_id} is {job.state.value} and has no model{reason}; "
            "a job registers its model when it succeeds"
        )
    return services.registry.get(model_id)
