"""GET /jobs/{id}/output: a batch job's scored table, as one file."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from services.edge.deps import PrincipalDep
from services.gateway.deps import Services, ServicesDep
from services.gateway.routes.jobs import JobId, own_job
from shared.auth import Principal
from shared.batch import MEDIA_TYPE_OF_FORMAT, BatchSpec, output_file
from shared.errors import ConflictError, NotFoundError
from shared.storage import StoragePath
from shared.vocabulary import JobStatus

router = APIRouter(prefix="/jobs", tags=["jobs"])
# Bytes read from storage and sent at a time.
CHUNK_BYTES = 1024 * 1024


@router.get(
    "/{job_id}/output",
    response_class=StreamingResponse,
    responses={
        200: {"content": {media: {} for media in MEDIA_TYPE_OF_FORMAT.values()}},
        404: {"description": "No such job, not a batch job, or its output was removed."},
        409: {"description": "The batch job has not succeeded (yet)."},
    },
)
async def get_output(
    job_id: JobId, services: ServicesDep, principal: PrincipalDep
) -> StreamingResponse:
    """A succeeded batch job's output: every row of its table, in order, with the
    model's prediction (and each class's probability) added, as one file in the
    format it asked for (CSV with one header row, or Parquet)."""
    # Redis and storage off the event loop.
    output, size, media_type = await run_in_threadpool(_located, job_id, services, principal)
    return StreamingResponse(
        _chunks(output),
        media_type=media_type,
        headers={
            "Content-Length": str(size),
            "Content-Disposition": f'attachment; filename="{job_id}{_suffix(output)}"',
        },
    )


def _located(job_id: str, services: Services, principal: Principal) -> tuple[StoragePath, int, str]:
    job = own_job(job_id, services, principal)
    if not isinstance(job.spec, BatchSpec):
        raise NotFoundError(
            f"job {job_id} is a tuning job and has no output; GET /jobs/{job_id}/trials has "
            "its results"
        )
    if job.state.is_terminal() and job.state is not JobStatus.SUCCEEDED:
        reason = f": {job.error}" if job.error else ""
        raise ConflictError(f"batch job {job_id} {job.state.value} and has no output{reason}")
    if job.state is not JobStatus.SUCCEEDED:
        raise ConflictError(
            f"batch job {job_id} is {job.state.value} ({job.rows_done or 0} of "
            f"{job.rows_total} rows scored); its output is here once it has succeeded"
        )
    # Outputs from before attempts had folders lie in the job's folder, below no tenant's.
    batches = services.settings.batches_dir
    if job.output_attempt is not None:
        batches = services.settings.batches_of(job.tenant)
    output = output_file(batches, job_id, job.spec.format, job.output_attempt)
    try:
        size = output.stat().st_size
    except FileNotFoundError:
        raise NotFoundError(f"the output of batch job {job_id} has been removed") from None
    return output, size, MEDIA_TYPE_OF_FORMAT[job.spec.format]


def _chunks(output: StoragePath) -> Iterator[bytes]:
    """The file, a chunk at a time (Starlette reads a plain iterator in its threads)."""
    filesystem, path = output.arrow
    with filesystem.open_input_stream(path) as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def _suffix(output: StoragePath) -> str:
    return "." + output.name.rsplit(".", 1)[-1]
