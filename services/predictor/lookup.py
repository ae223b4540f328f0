"""Which model a request names: a model id or the tenant's alias, seen only by those who
may see it; the errors say why there is none (unknown, deleted, or its job has none).

Shared by every route that names a model: /models and the Open Inference Protocol's /v2.
"""

from __future__ import annotations

from shared.auth import Principal
from shared.errors import ConflictError, NotFoundError
from shared.jobs import JobStore
from shared.registry import ModelRecord, ModelRegistry
from shared.vocabulary import JobStatus, Subject


def model_of_ref(
    ref: str, registry: ModelRegistry, jobs: JobStore, principal: Principal, draw: bool = False
) -> ModelRecord:
    """The model a model id or the principal's alias names; with ``draw`` (a
    prediction), one of a split alias's models, drawn by weight."""
    model_id = registry.resolve(ref, principal.tenant, draw)
    if model_id is None:
        raise NotFoundError.no(Subject.ALIAS, ref)
    return model_by_id(model_id, registry, jobs, principal)


def model_by_id(
    model_id: str, registry: ModelRegistry, jobs: JobStore, principal: Principal
) -> ModelRecord:
    """The model, if the principal may see it; another tenant's is not found (404)."""
    unknown = NotFoundError.no(Subject.MODEL, model_id)
    record = registry.find(model_id)
    if record is not None:
        if not principal.may_see(record.tenant):
            raise unknown
        return record
    if jobs.exists(model_id):
        job = jobs.get(model_id)
        if not principal.may_see(job.tenant):
            raise unknown
        if job.state == JobStatus.SUCCEEDED:
            # A job registers its model before it succeeds, so its model was deleted.
            raise NotFoundError(f"model {model_id} has been deleted", subject=Subject.MODEL)
        reason = f": {job.error}" if job.error else ""
        raise ConflictError(
            f"job {model_id} is {job.state.value} and has no model{reason}; "
            "a job registers its model when it succeeds"
        )
    raise unknown


def deleted(record: ModelRecord, registry: ModelRegistry) -> NotFoundError:
    """A model whose checkpoint is gone was deleted through another replica after this
    one last read its record: forget the record, and answer as for any deleted model."""
    registry.forget(record.id)
    return NotFoundError(f"model {record.id} has been deleted", subject=Subject.MODEL)
