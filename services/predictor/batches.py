"""Batch jobs as POST /models/{id or alias}/batch queues them: checked in full first."""

from __future__ import annotations

from shared.auth import tenant_folder
from shared.batch import BatchRequest, BatchSpec, check_scorable
from shared.data import DatasetStore
from shared.errors import InvalidInputError
from shared.registry import ModelRecord
from shared.settings import Settings


def batch_spec(
    request: BatchRequest, record: ModelRecord, settings: Settings, tenant: str
) -> BatchSpec:
    """The job that scores the request's table with ``record``'s model. NotFoundError for
    an unknown dataset; InvalidInputError for a table the model cannot score, or a
    priority the tenant may not use: refused now rather than failed later."""
    allowed = settings.high_priority_tenants
    if request.priority == "high" and allowed is not None and tenant not in allowed:
        raise InvalidInputError(
            f'priority: tenant {tenant} may not submit "high" jobs here '
            "(TUNEFLEET_HIGH_PRIORITY_TENANTS); submit it as normal"
        )
    datasets = DatasetStore(tenant_folder(settings.datasets_dir, tenant))
    summary = datasets.summary(request.dataset.upload)
    check_scorable(summary, record)
    return BatchSpec(**request.model_dump(), model=record.id, rows=summary.rows)
