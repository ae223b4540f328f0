"""/datasets: upload a CSV to tune on, list the uploads, delete one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from services.edge.deps import PrincipalDep
from services.gateway.deps import Services, ServicesDep
from shared.data import DEFAULT_TARGET, DatasetSummary, Purpose
from shared.errors import (
    ConflictError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from shared.vocabulary import DATASET_ID_PATTERN

router = APIRouter(prefix="/datasets", tags=["datasets"])
# Not application/x-www-form-urlencoded nor text/plain: a page on another site can
# have a browser send those (a plain HTML form) without asking this server first.
PARQUET_TYPES = ("application/vnd.apache.parquet", "application/x-parquet")
UPLOAD_TYPES = ("text/csv", "multipart/form-data", *PARQUET_TYPES)

DatasetId = Annotated[
    str, Path(pattern=DATASET_ID_PATTERN, description="A dataset id answered by POST /datasets.")
]


@router.post(
    "",
    status_code=201,
    responses={
        413: {"description": "Larger than the upload limit, or past the tenant's quota."},
        415: {"description": "The body is not text/csv, Parquet, nor multipart/form-data."},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
                PARQUET_TYPES[0]: {"schema": {"type": "string", "format": "binary"}},
            }
        }
    },
)
async def upload_dataset(
    request: Request,
    services: ServicesDep,
    principal: PrincipalDep,
    target: Annotated[str, Query(min_length=1, max_length=256)] = DEFAULT_TARGET,
    purpose: Annotated[
        Purpose,
        Query(
            description="training: a table with a target to tune on; scoring: rows to "
            "score with POST /models/{id}/batch (no target needed, any other columns)."
        ),
    ] = "training",
) -> DatasetSummary:
    """Upload a table: a CSV file with a header row (comma, semicolon, tab or pipe
    separated) or a Parquet file, as multipart field ``file`` or as the raw body
    (text/csv, application/vnd.apache.parquet). Text categories, dates and gaps are
    welcome: the summary says each column's role, its gaps and its top categories.

    Answers the dataset id to use as ``{"dataset": {"upload": id}}`` (or in a batch
    job, ``{"dataset": id}``) and a summary.
    """
    limit = services.settings.max_upload_bytes  # by Content-Length: the app's BodyLimit
    content_type = request.headers.get("content-type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type not in UPLOAD_TYPES:
        raise UnsupportedMediaTypeError(
            f"Content-Type {media_type or '(none)'} is not taken here: send a CSV file as a "
            f"text/csv body, a Parquet file as {PARQUET_TYPES[0]}, or either as "
            'multipart/form-data with the file in the field "file"'
        )
    if media_type == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError('send the CSV or Parquet file in the multipart field "file"')
        content = await upload.read(limit + 1)
    else:
        content = await request.body()
    if len(content) > limit:
        raise PayloadTooLargeError(f"the upload is larger than the limit of {limit} bytes")
    # Parsing and checking a large CSV takes a while: off the event loop.
    return await run_in_threadpool(
        services.datasets_of(principal.tenant).save,
        content,
        target,
        max_rows=services.settings.max_dataset_rows,
        max_columns=services.settings.max_dataset_columns,
        quota_bytes=services.settings.max_dataset_bytes_per_tenant,
        purpose=purpose,
        max_classes=services.settings.max_classes,
    )


@router.get("")
async def list_datasets(services: ServicesDep, principal: PrincipalDep) -> list[DatasetSummary]:
    """The tenant's uploaded datasets, the most recent first, with their summaries."""
    return await run_in_threadpool(services.datasets_of(principal.tenant).summaries)


@router.get("/{dataset_id}")
async def get_dataset(
    dataset_id: DatasetId, services: ServicesDep, principal: PrincipalDep
) -> DatasetSummary:
    """One uploaded dataset's summary, as its upload answered it."""
    return await run_in_threadpool(services.datasets_of(principal.tenant).summary, dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses={409: {"description": "A queued or running job uses the dataset."}},
)
async def delete_dataset(
    dataset_id: DatasetId, services: ServicesDep, principal: PrincipalDep
) -> Response:
    """Delete an uploaded dataset: its file and summary. 409 while a queued or running
    job uses it; jobs that have ended keep their results and models."""
    await run_in_threadpool(_delete, services, principal.tenant, dataset_id)
    return Response(status_code=204)


def _delete(services: Services, tenant: str, dataset_id: str) -> None:
    store = services.datasets_of(tenant)
    store.summary(dataset_id)  # 404 before the jobs are read
    for job in services.jobs.active(tenant):
        if job.spec.dataset.upload == dataset_id:
            raise ConflictError(
                f"job {job.id} ({job.state.value}) uses dataset {dataset_id}; delete the "
                f"dataset once the job has ended (DELETE /jobs/{job.id} cancels it)"
            )
    store.delete(dataset_id)
