"""/jobs: submit tuning jobs, follow them, read their trials."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import pyarrow
import pyarrow.csv
import pyarrow.parquet
from fastapi import APIRouter, Header, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from services.edge.deps import IdempotencyKeyHeader, PrincipalDep
from services.edge.finite_json import FiniteJSONRoute
from services.gateway.deps import ServicesDep
from services.gateway.events import EventStreamResponse, job_event_stream
from shared.auth import Principal
from shared.data import target_of
from shared.errors import ConflictError, InvalidInputError, NotFoundError
from shared.job_views import JobView
from shared.results import TrialRow, best_first, trials_table
from shared.spec import ContinueFrom, JobEdit, JobSpec, SchedulerSpec, StopRules
from shared.vocabulary import JOB_ID_PATTERN, JOB_ID_PREFIX_PATTERN, JobStatus, Subject

router = APIRouter(prefix="/jobs", tags=["jobs"], route_class=FiniteJSONRoute)

JobId = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="A job id from POST /jobs.")]
TrialId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9_]{1,64}$", description="A trial id from the trials table.")
]
TABLE_TYPES = {"csv": "text/csv", "parquet": "application/vnd.apache.parquet"}
# A job spec's longest name (JobSpec.name).
NAME_CHARS = 200
# Edits of one job that meet are each read and applied again, up to this many times.
EDIT_TRIES = 5


class JobAccepted(BaseModel):
    id: str
    status_url: str


@router.post("", status_code=202, responses={429: {"description": "The queue is full."}})
def submit_job(
    spec: JobSpec,
    services: ServicesDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobAccepted:
    """Queue a tuning job. The spec is validated in full before anything is written."""
    # An unknown upload (404), or one uploaded to be scored (422): now, not a failed job later.
    target_of(spec.dataset, services.datasets_of(principal.tenant))
    _check_limits(spec, services, principal.tenant)
    if spec.continue_from is not None:
        _check_continued(spec, services, principal)
    if spec.warm_start is not None:
        _check_warm_start(spec, services, principal)
    job_id, _ = services.jobs.enqueue(spec, idempotency_key, principal.tenant)
    return JobAccepted(id=job_id, status_url=f"/jobs/{job_id}")


@router.get("")
def list_jobs(
    services: ServicesDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    id_prefix: Annotated[
        str | None,
        Query(
            pattern=JOB_ID_PREFIX_PATTERN,
            description="Only jobs whose id starts with these hex digits, of any age "
            "(a short id, as the CLI takes them).",
        ),
    ] = None,
) -> list[JobView]:
    """The newest jobs first (an admin sees every tenant's)."""
    tenant = None if principal.admin else principal.tenant
    if id_prefix is not None:
        found = services.jobs.with_id_prefix(id_prefix, limit, tenant)
    else:
        found = services.jobs.recent(limit, tenant)
    return [job.seen_by(principal.admin) for job in found]


@router.get("/{job_id}")
def get_job(job_id: JobId, services: ServicesDep, principal: PrincipalDep) -> JobView:
    """A job's state, progress, best trial so far, test score and error."""
    return own_job(job_id, services, principal).seen_by(principal.admin)


@router.delete("/{job_id}", status_code=202)
def cancel_job(job_id: JobId, services: ServicesDep, principal: PrincipalDep) -> JobView:
    """Cancel a job: a queued one at once (cancelled), a running one once its trials
    have stopped (cancelling, then cancelled). 409 if it has already ended."""
    own_job(job_id, services, principal)
    return services.jobs.cancel(job_id).seen_by(principal.admin)


@router.patch("/{job_id}", responses={409: {"description": "The job has ended."}})
def edit_job(
    job_id: JobId, edit: JobEdit, services: ServicesDep, principal: PrincipalDep
) -> JobView:
    """Edit a queued or running tuning job: raise or lower max_concurrent_trials,
    extend time_budget_s, raise num_samples of a random or optuna search,
    change its priority (within what the tenant may use). A running job's driver follows
    the edit within seconds. 409 once the job has ended or is being cancelled."""
    job = own_job(job_id, services, principal)
    if not isinstance(job.spec, JobSpec):
        raise ConflictError(f"job {job_id} is a batch job; only tuning jobs can be edited")
    # Read, edited and written only if no other edit came between (else read again).
    for _ in range(EDIT_TRIES):
        edited = edit.applied_to(job.spec)
        _check_limits(edited, services, job.tenant)  # the job's tenant's, not an admin's
        only_queued = "num_samples" in edit.model_fields_set and _unpacked_random(edited)
        written = services.jobs.edit(job_id, edited, edit.priority, job.edits, only_queued)
        if written is not None:
            return written.seen_by(principal.admin)
        job = own_job(job_id, services, principal)
        assert isinstance(job.spec, JobSpec)
    raise ConflictError(f"job {job_id} is being edited by others at once; try again")


def _unpacked_random(spec: JobSpec) -> bool:
    """A random search whose trials run unpacked (packing off, or HyperBand): Tune's
    variant generator fixes its trials when the run starts."""
    unpacked = spec.packing is False or spec.scheduler.type == "hyperband"
    return spec.search.algorithm == "random" and unpacked


class ContinueRequest(BaseModel):
    epochs: int = Field(
        ge=2, le=100_000, description="Each trial's epochs in all, more than it ran."
    )
    top: int = Field(default=3, ge=1, le=100, description="How many of the best trials go on.")


@router.post(
    "/{job_id}/continue",
    status_code=202,
    responses={409: {"description": "The job has not succeeded."}},
)
def continue_job(
    job_id: JobId,
    request: ContinueRequest,
    services: ServicesDep,
    principal: PrincipalDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> JobAccepted:
    """Train the best ``top`` trials of a succeeded job on to ``epochs`` epochs, from
    their checkpoints, as a new job (its own trials table and model): more epochs
    without starting over."""
    job = own_job(job_id, services, principal)
    if not isinstance(job.spec, JobSpec) or job.state != JobStatus.SUCCEEDED:
        what = "a batch job" if not isinstance(job.spec, JobSpec) else job.state.value
        raise ConflictError(f"job {job_id} is {what}; only a succeeded tuning job's trials go on")
    metric, mode = job.metric or "val_loss", job.mode or "min"
    ranked = best_first(services.results.trial_records(job_id), metric, mode)
    chosen = [row for row in ranked if metric in row.get("best_metrics", {})][: request.top]
    if not chosen:
        raise ConflictError(f"job {job_id} has no trial that reported {metric}")
    ran = max(int(row.get("iterations", 0)) for row in chosen)
    if request.epochs <= ran:
        raise InvalidInputError(
            f"epochs: {request.epochs}; the trials have run up to {ran} epochs, so ask for more"
        )
    name = (job.spec.name or job_id[:8]).removesuffix(" continued")
    spec = job.spec.model_copy(
        update={
            "name": f"{name[: NAME_CHARS - len(' continued')]} continued",
            "continue_from": ContinueFrom(
                job=job_id, trials=[str(row["trial_id"]) for row in chosen], epochs=request.epochs
            ),
            "scheduler": SchedulerSpec(),
            "stop": StopRules(),
            "warm_start": None,
            "time_budget_s": None,
        }
    )
    # The job's own tenant's (an admin may continue another tenant's job): its data.
    _check_limits(spec, services, job.tenant)
    new_id, _ = services.jobs.enqueue(spec, idempotency_key, job.tenant)
    return JobAccepted(id=new_id, status_url=f"/jobs/{new_id}")


@router.get(
    "/{job_id}/trials",
    response_model=list[TrialRow],
    responses={200: {"content": {media: {} for media in TABLE_TYPES.values()}}},
)
def get_trials(
    job_id: JobId,
    services: ServicesDep,
    principal: PrincipalDep,
    format: Literal["json", "csv", "parquet"] = "json",
    sort: Annotated[
        Literal["trial_id", "metric"],
        Query(description="metric: best first by the job's metric and mode."),
    ] = "trial_id",
    limit: Annotated[int | None, Query(ge=1, description="At most this many rows.")] = None,
) -> Any:
    """One row per trial: config, last and best metrics, epochs, time, node, state and
    whether the scheduler stopped it early; as JSON, CSV or Parquet."""
    job = own_job(job_id, services, principal)
    records = services.results.trial_records(job_id)
    tuning = job.spec if isinstance(job.spec, JobSpec) else None  # a batch job has no trials
    metric = job.metric or (tuning.metric if tuning else None)
    if sort == "metric" and metric is not None:
        records = best_first(records, metric, job.mode or (tuning and tuning.mode) or "max")
    records = records[:limit]
    if format == "json":
        return records
    table = trials_table(records)
    buffer = io.BytesIO()
    arrow = pyarrow.Table.from_pandas(table, preserve_index=False)
    if format == "csv":
        pyarrow.csv.write_csv(arrow, buffer)  # some 8x faster than pandas' writer
    else:
        pyarrow.parquet.write_table(arrow, buffer)
    return Response(content=buffer.getvalue(), media_type=TABLE_TYPES[format])


@router.get("/{job_id}/trials/{trial_id}/history")
def get_trial_history(
    job_id: JobId, trial_id: TrialId, services: ServicesDep, principal: PrincipalDep
) -> list[dict[str, float]]:
    """A trial's metrics per epoch (training_iteration, training and validation
    accuracy and loss, or RMSE and R^2), first epoch first."""
    own_job(job_id, services, principal)
    return services.results.history(job_id, trial_id)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}},
        429: {"description": "The tenant has its limit of open event streams."},
    },
)
async def follow_job(
    job_id: JobId,
    services: ServicesDep,
    principal: PrincipalDep,
    last_event_id: Annotated[str | None, Header(pattern=r"^\d+-\d+$")] = None,
) -> StreamingResponse:
    """Server-Sent Events as the job runs: ``job`` (the job, when its state or progress
    changes) and ``trial`` (a trial's row after each epoch). The stream ends after the
    job's final state, and earlier after a long quiet spell or when Redis goes away:
    reconnect with Last-Event-ID to go on where it stopped."""
    # 404 before the stream starts; off the event loop, which every stream shares.
    await run_in_threadpool(own_job, job_id, services, principal)
    services.streams.take(principal.tenant)
    stream = job_event_stream(services, job_id, last_event_id, principal.admin)
    return EventStreamResponse(stream, services.streams, principal.tenant)


def own_job(job_id: str, services: ServicesDep, principal: Principal) -> JobView:
    """The job, if the principal may see it; another tenant's job is not found (404,
    not 403, so that ids do not leak)."""
    job = services.jobs.get(job_id)
    if not principal.may_see(job.tenant):
        raise NotFoundError.no(Subject.JOB, job_id)
    return job


def _check_continued(spec: JobSpec, services: ServicesDep, principal: Principal) -> None:
    """A spec may continue only trials of its own tenant's succeeded job, on that job's
    data, and trials that exist."""
    source = spec.continue_from
    assert source is not None
    earlier = own_job(source.job, services, principal)
    if not isinstance(earlier.spec, JobSpec) or earlier.state != JobStatus.SUCCEEDED:
        raise InvalidInputError(
            f"continue_from.job: job {source.job} is not a succeeded tuning job"
        )
    if earlier.spec.dataset != spec.dataset:
        raise InvalidInputError(
            f"continue_from: the dataset must be job {source.job}'s, as its trials learned it"
        )
    known = {str(row["trial_id"]) for row in services.results.trial_records(source.job)}
    unknown = [trial for trial in source.trials if trial not in known]
    if unknown:
        raise InvalidInputError(
            f"continue_from.trials: job {source.job} has no trial {unknown[0]!r}; "
            f"GET /jobs/{source.job}/trials lists them"
        )


def _check_warm_start(spec: JobSpec, services: ServicesDep, principal: Principal) -> None:
    """A spec may start from its own tenant's tuning jobs that have ended (404 for one
    it cannot see)."""
    assert spec.warm_start is not None
    for job_id in spec.warm_start.jobs:
        earlier = own_job(job_id, services, principal)
        if not isinstance(earlier.spec, JobSpec):
            raise InvalidInputError(
                f"warm_start.jobs: job {job_id} is a batch job; name tuning jobs"
            )
        if not earlier.state.is_terminal():
            raise InvalidInputError(
                f"warm_start.jobs: job {job_id} is {earlier.state.value}; a job can start "
                "from jobs that have ended, so submit it once that one has"
            )


def _check_limits(spec: JobSpec, services: ServicesDep, tenant: str) -> None:
    settings = services.settings
    allowed_high = settings.high_priority_tenants
    if spec.priority == "high" and allowed_high is not None and tenant not in allowed_high:
        raise InvalidInputError(
            f'priority: tenant {tenant} may not submit "high" jobs here '
            "(TUNEFLEET_HIGH_PRIORITY_TENANTS); submit it as normal"
        )
    if spec.resources.cpu < settings.min_trial_cpu:
        raise InvalidInputError(
            f"resources.cpu: {spec.resources.cpu} per trial; at least "
            f"{settings.min_trial_cpu} here (TUNEFLEET_MIN_TRIAL_CPU): packing (the "
            "default) trains many configurations per trial slot instead"
        )
    if 0 < spec.resources.gpu < settings.min_trial_gpu:
        raise InvalidInputError(
            f"resources.gpu: {spec.resources.gpu} per trial; at least "
            f"{settings.min_trial_gpu} here (TUNEFLEET_MIN_TRIAL_GPU), or 0 for none"
        )
    if spec.trial_count() > settings.max_trials:
        raise InvalidInputError(
            f"search: the spec asks for {spec.trial_count()} trials; at most "
            f"{settings.max_trials} are allowed here (TUNEFLEET_MAX_TRIALS)"
        )
    epochs = spec.most_epochs()
    if epochs > settings.max_epochs:
        raise InvalidInputError(
            f"search_space.epochs: up to {epochs} epochs asked; at most {settings.max_epochs} "
            "are allowed here (TUNEFLEET_MAX_EPOCHS)"
        )
    capacity = services.capacity.current()
    refusal = capacity.refusal(spec.resources) if capacity is not None else None
    if refusal is not None:  # rather than a job that waits forever for its trials
        raise InvalidInputError(f"resources: {refusal}")
