"""Batch scoring jobs: what one asks for, and the shape of the table it writes.

A batch job scores an uploaded table with a registered model. It waits in the same
queue as tuning jobs (tenants, limits, fair share, cancel); its record holds a
BatchSpec as its spec, told apart by ``kind``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.errors import InvalidInputError
from shared.storage import StoragePath
from shared.vocabulary import (
    DATASET_ID_PATTERN,
    DEFAULT_PRIORITY,
    JOB_ID_PATTERN,
    MODEL_ID_PATTERN,
    Priority,
)
from shared.wording import listed

if TYPE_CHECKING:  # shared.data imports scikit-learn: not for the queue's every user
    from shared.data import DatasetSummary
    from shared.registry import ModelRecord

OutputFormat = Literal["csv", "parquet"]
MEDIA_TYPE_OF_FORMAT: dict[str, str] = {
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
# A batch job's output, below <storage>/batches/<job id>/ (see output_file).
OUTPUT_STEM = "predictions"
PREDICTION_COLUMN = "prediction"
# Column types (DatasetSummary.column_types) a feature may have.
NUMERIC = ("integer", "float", "boolean")
PROBABILITY_PREFIX = "probability_"


class BatchDataset(BaseModel):
    """The table to score: an upload (POST /datasets)."""

    model_config = ConfigDict(extra="forbid")

    upload: str = Field(pattern=DATASET_ID_PATTERN, description="A dataset id.")


class BatchRequest(BaseModel):
    """What POST /models/{id or alias}/batch takes."""

    model_config = ConfigDict(extra="forbid")

    dataset: BatchDataset = Field(
        description='The table to score: a dataset id from POST /datasets, or {"upload": id}.'
    )
    format: OutputFormat = Field(default="csv", description="The output file's format.")
    name: str | None = Field(default=None, max_length=200)
    priority: Priority = DEFAULT_PRIORITY

    @field_validator("dataset", mode="before")
    @classmethod
    def _id_alone(cls, value: Any) -> Any:
        """Accept ``"dataset": "<id>"`` for ``{"upload": "<id>"}``."""
        return {"upload": value} if isinstance(value, str) else value


class BatchSpec(BatchRequest):
    """A batch job as queued: the request and the model it was resolved to (an alias
    may move while the job waits; the job scores with the model it named then)."""

    kind: Literal["batch"] = "batch"
    model: str = Field(pattern=MODEL_ID_PATTERN, description="The model that scores.")
    rows: int = Field(ge=0, description="Rows of the table.")


def attempt_folder(batches_dir: StoragePath, job_id: str, attempt: str) -> StoragePath:
    """What one attempt (one claim of the job, by its token) writes: its parts and its
    output. An attempt whose lease ended while it wrote touches only its own folder.
    ``batches_dir`` is the tenant's: ``settings.batches_of(tenant)``."""
    return batches_dir / job_id / attempt


def output_file(
    batches_dir: StoragePath, job_id: str, output_format: str, attempt: str | None
) -> StoragePath:
    """Where a batch job's output lies once the job has succeeded: one file, in the
    folder of the attempt that succeeded (jobs from before attempts had folders: in the
    job's)."""
    folder = (
        batches_dir / job_id if attempt is None else attempt_folder(batches_dir, job_id, attempt)
    )
    return folder / f"{OUTPUT_STEM}.{output_format}"


def batch_bytes(tenant_root: StoragePath) -> int:
    """Bytes of one tenant's batch outputs: its folder below the batches folder
    (``settings.batches_of(tenant)``), job folders only."""
    return sum(
        file.size
        for entry in tenant_root.entries()
        if entry.is_dir and re.fullmatch(JOB_ID_PATTERN, entry.name)
        for file in entry.path.walk_files()
    )


def output_columns(task: str, classes: Sequence[Any]) -> list[str]:
    """The columns a model adds to every row: its prediction, and for a classifier the
    probability of each class."""
    if task == "regression":
        return [PREDICTION_COLUMN]
    return [PREDICTION_COLUMN, *(f"{PROBABILITY_PREFIX}{label}" for label in classes)]


def check_scorable(summary: DatasetSummary, record: ModelRecord) -> None:
    """InvalidInputError unless the table holds every feature of the model and no column
    the output would overwrite. Other columns (the target, ids) are kept."""
    dataset_id = summary.id
    present = {*summary.columns, *([summary.target] if summary.target else [])}
    added = output_columns(record.task, record.classes)
    missing = [
        name
        for name in record.feature_names
        if name not in present and record.role_of(name) != "ignore"
    ]
    if missing:
        raise InvalidInputError(
            f"dataset {dataset_id} lacks the model's features {_listed(missing)}; upload a "
            "table with a column for each of the model's features"
        )
    clashing = [name for name in added if name in present]
    if clashing:
        raise InvalidInputError(
            f"dataset {dataset_id} has columns {_listed(clashing)}, which the output adds; "
            "rename or drop them and upload it again"
        )
    types = summary.column_types
    text = [
        name
        for name in record.feature_names
        if record.role_of(name) == "numeric" and types.get(name, "float") not in NUMERIC
    ]
    if text:
        raise InvalidInputError(
            f"dataset {dataset_id}: the model's numeric columns {_listed(text)} hold text; "
            "they must be numbers (or empty for a gap)"
        )


def _listed(names: Sequence[str]) -> str:
    return listed([repr(name) for name in names])
