"""What the API answers about a job (JobView, BestTrial), apart from the store that
keeps jobs: the routes of both HTTP services and the driver use them."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.batch import BatchSpec
from shared.spec import JobSpec
from shared.vocabulary import DEFAULT_PRIORITY, DEFAULT_TENANT, JobStatus, StopReason


class BestTrial(BaseModel):
    """The best trial so far, by the job's metric and mode."""

    trial_id: str
    metric: str
    value: float
    config: dict[str, Any]


class JobView(BaseModel):
    """A job as the API answers it."""

    id: str
    kind: Literal["tune", "batch"] = Field(
        default="tune", description="tune: a tuning job; batch: scoring a table with a model."
    )
    name: str | None
    state: JobStatus
    priority: str
    spec: JobSpec | BatchSpec
    submitted_at: float
    started_at: float | None = None
    finished_at: float | None = None
    task: str | None = Field(default=None, description="classification or regression.")
    metric: str | None = Field(default=None, description="The metric the job optimises.")
    mode: str | None = None
    trials_total: int
    trials_done: int = 0
    trials_running: int = 0
    best: BestTrial | None = None
    test_metrics: dict[str, float] | None = None
    stopped_by: StopReason | None = Field(
        default=None,
        description="What ended a succeeded job before every trial had run: its stop "
        "rules (target, no_improvement) or its time_budget_s.",
    )
    error: str | None = None
    engine: str | None = Field(
        default=None,
        description="How the trials run: packed (configurations trained together, each "
        "still a trial of its own), or unpacked and why.",
    )
    attempts: int = 0
    edits: int = Field(default=0, description="How many times PATCH /jobs/{id} edited it.")
    driver: str | None = None
    tenant: str = DEFAULT_TENANT
    rows_used: int | None = Field(
        default=None, description="Rows a tuning job splits into training, validation and test."
    )
    rows_without_target: int | None = Field(
        default=None, description="Rows a tuning job left out: their target is a gap."
    )
    rows_total: int | None = Field(default=None, description="A batch job's rows to score.")
    rows_done: int | None = Field(default=None, description="A batch job's rows scored so far.")
    scored_on: list[str] | None = Field(
        default=None, description="The Ray nodes that scored a succeeded batch job's table."
    )
    # The claim whose attempt wrote a succeeded batch job's output (see output_file).
    output_attempt: str | None = Field(default=None, exclude=True)

    def seen_by(self, admin: bool) -> JobView:
        """The view a caller gets: the driver's id names its host and process, which
        only admins see (as on /healthz)."""
        return self if admin else self.model_copy(update={"driver": None})


def job_view(raw: dict[str, Any]) -> JobView:
    """A job's Redis hash as the API answers it."""
    kind = raw.get("kind", "tune")
    spec_type = BatchSpec if kind == "batch" else JobSpec
    spec = spec_type.model_validate_json(raw["spec"])
    return JobView(
        id=raw["id"],
        kind=kind,
        name=spec.name,
        state=JobStatus(raw["state"]),
        priority=raw.get("priority", DEFAULT_PRIORITY),
        spec=spec,
        submitted_at=float(raw["submitted_at"]),
        started_at=float(raw["started_at"]) if "started_at" in raw else None,
        finished_at=float(raw["finished_at"]) if "finished_at" in raw else None,
        task=raw.get("task"),
        metric=raw.get("metric"),
        mode=raw.get("mode"),
        engine=raw.get("engine"),
        trials_total=int(raw["trials_total"]),
        trials_done=int(raw.get("trials_done", 0)),
        trials_running=int(raw.get("trials_running", 0)),
        best=BestTrial.model_validate_json(raw["best"]) if "best" in raw else None,
        test_metrics=json.loads(raw["test_metrics"]) if "test_metrics" in raw else None,
        stopped_by=raw.get("stopped_by"),
        error=raw.get("error"),
        attempts=int(raw.get("attempts", 0)),
        edits=int(raw.get("edits", 0)),
        driver=raw.get("driver"),
        tenant=raw.get("tenant", DEFAULT_TENANT),
        rows_used=int(raw["rows_used"]) if "rows_used" in raw else None,
        rows_without_target=(
            int(raw["rows_without_target"]) if "rows_without_target" in raw else None
        ),
        rows_total=int(raw["rows_total"]) if "rows_total" in raw else None,
        rows_done=int(raw["rows_done"]) if "rows_done" in raw else None,
        scored_on=raw["scored_on"].split(",") if raw.get("scored_on") else None,
        output_attempt=raw.get("output_attempt"),
    )
