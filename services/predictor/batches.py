"""Batch jobs as POST /models/{id or alias}/batch queues them: checked in full first."""

from __future__ import annotations

from shared.batch import BatchRequest, BatchSpec, batch_bytes, check_scorable
from shared.data import DatasetStore
from shared.errors import InvalidInputError
from shared.quotas import ensure_room
from shared.registry import ModelRecord
from shared.settings import Settings
from shared.vocabulary import Subject


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
    datasets = DatasetStore(settings.datasets_of(tenant))
    summary = datasets.summary(request.dataset.upload)
    check_scorable(summary, record)
    table, _ = datasets.table(request.dataset.upload)
    ensure_room(
        used_bytes=batch_bytes(settings.batches_of(tenant)),
        # The output holds the table's rows with the model's columns added: at least
        # the table's size.
        adding_bytes=table.stat().st_size,
        quota_bytes=settings.max_batch_bytes_per_tenant,
        what="batch outputs",
        setting="TUNEFLEET_MAX_BATCH_BYTES_PER_TENANT",
        fix="wait for old outputs to go (TUNEFLEET_EXPERIMENT_RETENTION_S after their jobs "
        "end), or score a smaller table,",
        subject=Subject.JOB,
    )
    return BatchSpec(**request.model_dump(), model=record.id, rows=summary.rows)
