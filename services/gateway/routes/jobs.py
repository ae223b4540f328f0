"""/jobs: submit tuning jobs, follow them, read their trials."""

from __future__ import annotations

import io
from typing import Annotated, Literal

import pandas as pd
from fastapi import APIRouter, Header, Path, Query, Response
from pydantic import BaseModel

from services.gateway.deps import ServicesDep
from shared.jobs import JOB_ID_PATTERN, JobView, TrialRow
from shared.spec import JobSpec

router = APIRouter(prefix="/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="A job id from POST /jobs.")]


class JobAccepted(BaseModel):
    id: str
    status_url: str


@router.post("", status_code=202, responses={429: {"description": "The queue is full."}})
def submit_job(
    spec: JobSpec,
    services: ServicesDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=200,
            description="A retried submission with the same key returns the first job.",
        ),
    ] = None,
) -> JobAccepted:
    """Queue a tuning job. The spec is validated in full before anything is written."""
    if spec.dataset.upload is not None:
        services.datasets.summary(spec.dataset.upload)  # 404 now rather than a failed job later
    job_id, _ = services.jobs.enqueue(spec, idempotency_key)
    return JobAccepted(id=job_id, status_url=f"/jobs/{job_id}")


@router.get("")
def list_jobs(
    services: ServicesDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[JobView]:
    """The newest jobs first."""
    return services.jobs.recent(limit)


@router.get("/{job_id}")
def get_job(job_id: JobId, services: ServicesDep) -> JobView:
    """A job's state, progress, best trial so far, test score and error."""
    return services.jobs.get(job_id)


@router.delete("/{job_id}", status_code=202)
def cancel_job(job_id: JobId, services: ServicesDep) -> JobView:
    """Cancel a job: a queued one at once (cancelled), a running one once its trials
    have stopped (cancelling, then cancelled). 409 if it has already ended."""
    return services.jobs.cancel(job_id)


@router.get("/{job_id}/trials", response_model=list[TrialRow])
def get_trials(
    job_id: JobId,
    services: ServicesDep,
    format: Literal["json", "csv"] = "json",
) -> list[TrialRow] | Response:
    """One row per trial: config, last metrics, iterations, state (JSON or CSV)."""
    rows = services.jobs.trials(job_id)
    if format == "json":
        return rows
    frame = pd.json_normalize([row.model_dump() for row in rows], sep="/")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return Response(content=buffer.getvalue(), media_type="text/csv")
