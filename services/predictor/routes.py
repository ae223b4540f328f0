"""/models: registered models, their aliases, predictions from them, and their exports.

Serve mounts the predictor at /models, so the paths here are relative to it.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from pydantic import (
    BaseModel,
    Field,
    SkipValidation,
    StringConstraints,
    ValidationError,
    model_validator,
)
from starlette.concurrency import run_in_threadpool

from services.edge.deps import IdempotencyKeyHeader, PrincipalDep
from services.edge.finite_json import FiniteJSONRoute, loads_finite, nan_is_a_gap
from services.edge.metrics import metrics_of
from services.predictor.batches import batch_spec
from services.predictor.checkpoints import ImportLimits, load_checked
from services.predictor.deps import ModelServicesDep
from services.predictor.export import export_model
from services.predictor.features import instances_to_columns
from services.predictor.lookup import deleted, model_by_id, model_of_ref
from services.predictor.mlflow_export import mlflow_zip
from shared.auth import Principal
from shared.batch import BatchRequest
from shared.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from shared.export_formats import EXTENSION_OF_FORMAT, ExportFormat
from shared.model import CHECKPOINT_FILE, ModelBundle
from shared.registry import ModelRecord
from shared.vocabulary import ALIAS_PATTERN, MODEL_ID_PATTERN, MODEL_REF_PATTERN

router = APIRouter(tags=["models"], route_class=FiniteJSONRoute)

ModelId = Annotated[
    str, Path(pattern=MODEL_ID_PATTERN, description="The id of the job that made the model.")
]
ModelRef = Annotated[str, Path(pattern=MODEL_REF_PATTERN, description="A model id or an alias.")]
AliasName = Annotated[str, Path(pattern=ALIAS_PATTERN, description="An alias: a-z, 0-9, _ and -.")]


class PredictRequest(BaseModel):
    # Each instance's shape is checked by instances_to_columns, which names the
    # instance; validating every cell here first was ~150 us a 64-row request.
    instances: list[SkipValidation[dict[str, Any] | list[Any]]] = Field(
        description="Rows as {column: value} objects (numbers, strings for categories, "
        "ISO 8601 strings for dates, null for a gap), or lists of values in the order of "
        "the model's feature_names."
    )


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(description="Class labels, or values for regression.")
    probabilities: list[list[float]] | None = Field(
        description="Per class, in the order of model.classes; null for regression."
    )
    model: ModelView = Field(description="The model that answered.")


class BatchAccepted(BaseModel):
    id: str = Field(description="The batch job's id.")
    status_url: str
    output_url: str = Field(description="Where the output is, once the job has succeeded.")


class ModelView(ModelRecord):
    """A model as the API shows it: where its checkpoint lies is for admins only."""

    checkpoint_uri: str | None = Field(  # type: ignore[assignment]
        default=None,
        description="The checkpoint's folder or URI on the server; null for non-admins.",
    )

    @classmethod
    def of(cls, record: ModelRecord, principal: Principal) -> ModelView:
        shown = dict(record)
        if not principal.admin:
            shown["checkpoint_uri"] = None
        # The record is valid already: no second validation on every prediction.
        return cls.model_construct(**shown)


ModelIdKey = Annotated[str, StringConstraints(pattern=MODEL_ID_PATTERN)]
Weight = Annotated[float, Field(gt=0, le=1e6, allow_inf_nan=False)]
MAX_SPLIT_MODELS = 10


class AliasTarget(BaseModel):
    """One model (all of the alias's traffic), or several by weight (a canary)."""

    model_id: str | None = Field(
        default=None, pattern=MODEL_ID_PATTERN, description="The model (job) id to promote."
    )
    models: dict[ModelIdKey, Weight] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SPLIT_MODELS,
        description='Models by weight, e.g. {"<id>": 0.9, "<id>": 0.1}: each prediction by '
        "the alias goes to one of them, drawn by weight (normalised to sum to 1).",
    )

    @model_validator(mode="after")
    def _one_way(self) -> AliasTarget:
        if (self.model_id is None) == (self.models is None):
            raise ValueError('give either "model_id" (one model) or "models" (models by weight)')
        return self

    def weights(self) -> dict[str, float]:
        return self.models if self.models is not None else {str(self.model_id): 1.0}


class Alias(BaseModel):
    alias: str
    model_id: str = Field(description="The model with the most weight: what exports and "
                          "batch jobs by the alias use.")  # fmt: skip
    models: dict[str, float] = Field(
        description="Where predictions by the alias go, by weight (one model: weight 1)."
    )


@router.get("/")
def list_models(services: ModelServicesDep, principal: PrincipalDep) -> list[ModelView]:
    """The newest models first (an admin sees every tenant's)."""
    records = services.registry.recent(tenant=None if principal.admin else principal.tenant)
    return [ModelView.of(record, principal) for record in records]


@router.get("/aliases")
def list_aliases(services: ModelServicesDep, principal: PrincipalDep) -> dict[str, str]:
    """The tenant's aliases: name -> model id."""
    return services.registry.aliases(principal.tenant)


@router.put("/aliases/{name}")
def set_alias(
    name: AliasName, target: AliasTarget, services: ModelServicesDep, principal: PrincipalDep
) -> Alias:
    """Promote a model (``model_id``): predictions by this alias go to it from now on.
    Or split the alias's traffic (``models``, by weight) for a canary; each answer names
    the model that answered, and GET /metrics counts each model's predictions. Promotion
    moves all the weight to one model."""
    for model_id in target.weights():
        _model(model_id, services, principal)
    shares = services.registry.split_alias(name, target.weights(), principal.tenant)
    return _alias_view(name, shares)


@router.get("/aliases/{name}")
def get_alias(name: AliasName, services: ModelServicesDep, principal: PrincipalDep) -> Alias:
    """Where an alias sends predictions, by weight."""
    return _alias_view(name, services.registry.alias_weights(name, principal.tenant))


def _alias_view(name: str, shares: dict[str, float]) -> Alias:
    return Alias(alias=name, model_id=max(shares, key=lambda m: shares[m]), models=shares)


@router.delete("/aliases/{name}", status_code=204)
def delete_alias(name: AliasName, services: ModelServicesDep, principal: PrincipalDep) -> Response:
    services.registry.delete_alias(name, principal.tenant)
    return Response(status_code=204)


class ImportMeta(BaseModel):
    """What is known of an imported checkpoint besides its weights."""

    config: dict[str, Any] = Field(default_factory=dict, description="Its hyperparameters.")
    metric: str = Field(default="val_accuracy", max_length=64)
    mode: Literal["max", "min"] = "max"
    validation_value: float = Field(
        allow_inf_nan=False, description="Its value of the metric on validation."
    )


@router.post("/import", status_code=201)
async def import_model(
    checkpoint: Annotated[UploadFile, File(description=f"A tunefleet {CHECKPOINT_FILE}.")],
    meta: Annotated[str, Form(description="ImportMeta as JSON.")],
    services: ModelServicesDep,
    principal: PrincipalDep,
) -> ModelView:
    """Register a checkpoint made by tunefleet's trainable elsewhere (an old experiment
    folder, another cluster) as a model that can be predicted with."""
    try:
        info = ImportMeta.model_validate(loads_finite(meta, "meta"))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"meta: not JSON ({exc})") from exc
    except ValidationError as exc:
        raise InvalidInputError(f"meta: {exc.errors()[0]['msg']}") from exc
    limit = services.settings.max_upload_bytes
    content = await checkpoint.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLargeError(f"the checkpoint is larger than the limit of {limit} bytes")
    # Off the event loop: it lists the tenant's folders.
    await run_in_threadpool(
        services.model_files.ensure_room,
        principal.tenant,
        len(content),
        services.settings.max_model_bytes_per_tenant,
    )
    model_id = uuid.uuid4().hex
    with tempfile.TemporaryDirectory() as folder:
        (FilePath(folder) / CHECKPOINT_FILE).write_bytes(content)
        # Its claims checked before its network is built. Off the event loop: it takes a while.
        limits = ImportLimits.of(services.settings)
        bundle = await run_in_threadpool(load_checked, FilePath(folder), limits)
        home = await run_in_threadpool(
            services.model_files.save,
            principal.tenant,
            model_id,
            FilePath(folder) / CHECKPOINT_FILE,
        )
    try:
        record = ModelRecord(
            id=model_id,
            job_id=model_id,
            checkpoint_uri=str(home),
            task=bundle.task,
            config=info.config,
            metric=info.metric,
            mode=info.mode,
            validation_value=info.validation_value,
            test_metrics={},
            feature_names=list(bundle.feature_names),
            columns=dict(bundle.columns),
            classes=list(bundle.classes),
            created_at=time.time(),
            tenant=principal.tenant,
        )
        await run_in_threadpool(services.registry.register, record)
    except BaseException:
        # Not registered: its file must not stay in storage, counted in the quota.
        await run_in_threadpool(services.model_files.remove, principal.tenant, model_id, str(home))
        raise
    return ModelView.of(record, principal)


@router.get("/{model_id}")
def get_model(model_id: ModelId, services: ModelServicesDep, principal: PrincipalDep) -> ModelView:
    return ModelView.of(_model(model_id, services, principal), principal)


@router.delete(
    "/{model_id}",
    status_code=204,
    responses={409: {"description": "An alias points at the model: move or delete it first."}},
)
def delete_model(
    model_id: ModelId, services: ModelServicesDep, principal: PrincipalDep, request: Request
) -> Response:
    """Remove a model: its record, and an imported model's checkpoint (a job's model
    leaves its checkpoint to the job's experiment folder, which is removed once old).
    409 while an alias points at it. Predictions with it answer 404 from then on;
    another predictor replica that answered with it recently may do so for up to 30 s."""
    record = _model(model_id, services, principal)
    services.registry.delete(model_id, principal.tenant)
    services.model_files.remove(record.tenant, record.id, record.checkpoint_uri)
    metrics_of(request.app).forget_model(model_id)
    return Response(status_code=204)


@router.post("/{model_ref}/predict", response_model=PredictResponse)
@nan_is_a_gap
async def predict(
    model_ref: ModelRef,
    request: PredictRequest,
    services: ModelServicesDep,
    principal: PrincipalDep,
    http_request: Request,
) -> Response:
    """Predict with a model, by id or alias: classes and their probabilities, or values."""
    started_s = time.perf_counter()
    record = services.registry.cached(model_ref)  # a model id read recently: no Redis
    if record is None or not principal.may_see(record.tenant):
        # Redis reads off the event loop, which the batched predictions share.
        record = await run_in_threadpool(
            model_of_ref, model_ref, services.registry, services.jobs, principal, True
        )
    limit = services.settings.max_instances
    if len(request.instances) > limit:
        raise PayloadTooLargeError(
            f"{len(request.instances)} instances in one request; at most {limit} are allowed"
        )
    columns = instances_to_columns(
        request.instances, record.feature_names, record.columns, record.target
    )
    try:
        answer = await services.predict(record.id, columns)
    except FileNotFoundError as exc:
        raise _deleted(record, services) from exc
    metrics_of(http_request.app).observe_prediction(
        record.id, len(request.instances), time.perf_counter() - started_s
    )
    answered = PredictResponse(
        predictions=answer["predictions"],
        probabilities=answer["probabilities"],
        model=ModelView.of(record, principal),
    )
    # Serialized here, once (FastAPI would validate the answer again first).
    return Response(answered.model_dump_json(), media_type="application/json")


@router.post(
    "/{model_ref}/batch",
    status_code=202,
    responses={429: {"description": "The queue, or the tenant's jobs, are full."}},
)
def submit_batch(
    model_ref: ModelRef,
    request: BatchRequest,
    services: ModelServicesDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchAccepted:
    """Queue a batch job: the uploaded table scored with a model, by id or alias, on the
    cluster; each row with its prediction (and each class's probability) added. It
    runs as jobs do (GET /jobs/{id}, DELETE /jobs/{id} cancels); once it has
    succeeded, GET /jobs/{id}/output is the table, as one CSV or Parquet file."""
    record = _model_of_ref(model_ref, services, principal)
    spec = batch_spec(request, record, services.settings, principal.tenant)
    job_id, _ = services.jobs.enqueue(spec, idempotency_key, principal.tenant)
    return BatchAccepted(
        id=job_id, status_url=f"/jobs/{job_id}", output_url=f"/jobs/{job_id}/output"
    )


@router.get(
    "/{model_ref}/export",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def export(
    model_ref: ModelRef,
    services: ModelServicesDep,
    principal: PrincipalDep,
    export_format: Annotated[
        ExportFormat,
        Query(
            alias="format",
            description="torchscript (a .pt file), onnx (a .onnx file), or mlflow (an "
            "MLflow model folder as a .zip).",
        ),
    ] = "torchscript",
) -> Response:
    """The model, by id or alias, as one file that predicts without tunefleet.
    TorchScript and ONNX: the encoded features in (float32, in the order of
    encoded_names), probabilities per class or values out; the preprocessing plan and
    its code in the file's metadata. MLflow: a model folder whose pyfunc flavor takes
    raw rows (a dataframe) and answers as /predict does, preprocessing included."""
    record = await run_in_threadpool(_model_of_ref, model_ref, services, principal)
    checkpoint = services.settings.storage_at(record.checkpoint_uri)
    try:
        # Read and exported off the event loop: it takes a while.
        bundle = await run_in_threadpool(ModelBundle.load, checkpoint)
    except FileNotFoundError as exc:
        raise _deleted(record, services) from exc
    exporter = (
        mlflow_zip
        if export_format == "mlflow"
        else partial(export_model, export_format=export_format)
    )
    content = await run_in_threadpool(exporter, bundle, record.id)
    filename = f"{record.id}{EXTENSION_OF_FORMAT[export_format]}"
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _deleted(record: ModelRecord, services: ModelServicesDep) -> NotFoundError:
    return deleted(record, services.registry)


def _model_of_ref(ref: str, services: ModelServicesDep, principal: Principal) -> ModelRecord:
    return model_of_ref(ref, services.registry, services.jobs, principal)


def _model(model_id: str, services: ModelServicesDep, principal: Principal) -> ModelRecord:
    return model_by_id(model_id, services.registry, services.jobs, principal)
