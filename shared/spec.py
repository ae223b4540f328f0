"""JobSpec: what a user asks tunefleet to tune, validated before anything is queued."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
    model_validator,
)

from shared.errors import InvalidInputError
from shared.search_space import SAMPLED, Grid, SearchSpace
from shared.vocabulary import (
    BUILTIN_DATASETS,
    DATASET_ID_PATTERN,
    DEFAULT_METRIC_OF_TASK,
    DEFAULT_PRIORITY,
    JOB_ID_PATTERN,
    METRICS_OF_TASK,
    BuiltinDataset,
    Metric,
    Priority,
    Role,
    Task,
    mode_of,
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetSpec(_Strict):
    """Where the data comes from and how it is split, scaled and sampled."""

    builtin: BuiltinDataset | None = None
    upload: str | None = Field(
        default=None,
        pattern=DATASET_ID_PATTERN,
        description="A dataset id answered by POST /datasets.",
    )
    target: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description='Column to predict; default: the upload\'s, else "target".',
    )
    validation_fraction: float = Field(default=0.2, gt=0, lt=1)
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    stratify: bool = Field(default=True, description="Stratify splits by class.")
    scaler: Literal["minmax", "standard", "quantile", "none"] = Field(
        default="minmax",
        description="How numeric columns are scaled, fitted on the training rows: minmax "
        "(the seed's), standard, quantile (onto a normal, for skewed columns) or none.",
    )
    columns: dict[str, Role] = Field(
        default_factory=dict,
        max_length=10_000,
        description="Roles to set instead of the inferred ones: column -> numeric, "
        "categorical, datetime or ignore. GET /datasets/{id} shows the inferred roles.",
    )
    target_transform: Literal["none", "log", "auto"] = Field(
        default="auto",
        description="Regression: learn the target on a log scale (log1p); auto does so "
        "for a target that is never negative and skewed. Predictions come back in the "
        "target's own units.",
    )
    balance: Literal["weighted_sampler", "none"] = Field(
        default="weighted_sampler", description="Class-balanced sampling (classification)."
    )
    seed: int = Field(default=21, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_source_and_room_to_train(self) -> DatasetSpec:
        sources = [s for s in (self.builtin, self.upload) if s is not None]
        if len(sources) != 1:
            raise ValueError(
                'give exactly one dataset source: "builtin" (one of '
                f'{", ".join(BUILTIN_DATASETS)}) or "upload" (the id of an uploaded dataset)'
            )
        if self.validation_fraction + self.test_fraction > 0.9:
            raise ValueError(
                "validation_fraction + test_fraction must leave at least 10% of the rows "
                "to train on"
            )
        return self


class SearchSettings(_Strict):
    """How configurations are drawn from the search space (Tune's own searchers).

    ``grid`` tries listed values only; ``random`` also samples the ranges and choices
    (grid dimensions combine with sampling, as in Tune); ``optuna`` is TPE through
    Tune's OptunaSearch. Unset, it is ``random`` when the space samples, else ``grid``.
    """

    algorithm: Literal["grid", "random", "optuna"] | None = None
    num_samples: int = Field(
        default=1,
        ge=1,
        description="grid/random: trials per grid point; optuna: trials in all (at most "
        "TUNEFLEET_MAX_TRIALS in all, checked on submit).",
    )
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class SchedulerSpec(_Strict):
    """Early stopping with Tune's schedulers; epochs are the time unit."""

    type: Literal["fifo", "asha", "hyperband", "median"] = "fifo"
    grace_period: int = Field(
        default=1,
        ge=1,
        description="Epochs every trial runs before it may be stopped (asha, median).",
    )
    reduction_factor: float = Field(
        default=3, gt=1, le=100, description="Share of trials kept per rung is 1/this."
    )
    max_epochs: int | None = Field(
        default=None, ge=1, description="Default: the most epochs of the space."
    )


class Resources(_Strict):
    """What one trial reserves on the cluster; fractions are allowed."""

    cpu: float = Field(default=1.0, gt=0, le=512)
    gpu: float = Field(default=0.0, ge=0, le=64)


class Packing(_Strict):
    """How many configurations train together as one computation (a pack)."""

    max_k: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Most configurations in one pack; default: the driver's choice "
        "(64 on a CPU, 512 on a GPU).",
    )


class NoImprovement(_Strict):
    """End the job once the best trial has not changed while this many trials ended."""

    trials: int = Field(
        ge=1, le=1_000_000, description="Trials that end in a row without a new best."
    )


class StopRules(_Strict):
    """When a job ends before every trial has run; the job still succeeds, with the best
    model so far, and its record says which rule ended it (``stopped_by``)."""

    target: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="End once a trial's metric reaches this: at least it for a metric "
        "to maximize, at most for one to minimize.",
    )
    no_improvement: NoImprovement | None = None


class ContinueFrom(_Strict):
    """Trials of an earlier job trained on from their checkpoints (POST /jobs/{id}/continue)."""

    job: str = Field(pattern=JOB_ID_PATTERN, description="The job whose trials go on.")
    trials: list[str] = Field(
        min_length=1, max_length=100, description="Their trial ids, best first."
    )
    epochs: int = Field(ge=2, le=100_000, description="Each trial's epochs in all.")


class WarmStart(_Strict):
    """Earlier jobs whose results seed this one (see services/driver/warm_start.py)."""

    jobs: list[Annotated[str, Field(pattern=JOB_ID_PATTERN)]] = Field(
        min_length=1,
        max_length=10,
        description="Ended tuning jobs of the same tenant. On the same dataset and split, "
        "their finished trials whose configuration this job would train are carried over "
        "(not trained again) and Optuna learns from them; on other data, their best "
        "configurations are tried first.",
    )

    @field_validator("jobs")
    @classmethod
    def _each_once(cls, jobs: list[str]) -> list[str]:
        if len(set(jobs)) != len(jobs):
            raise ValueError("name each job once")
        return jobs


class JobSpec(_Strict):
    """A tuning job as a user submits it."""

    name: str | None = Field(default=None, max_length=200)
    priority: Priority = Field(
        default=DEFAULT_PRIORITY, description="high jobs run before normal, normal before low."
    )
    dataset: DatasetSpec
    task: Task | None = Field(
        default=None,
        description="Default: from the metric if it says, else from the target column.",
    )
    search_space: SearchSpace = Field(default_factory=SearchSpace)
    search: SearchSettings = Field(default_factory=SearchSettings)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    metric: Metric | None = Field(
        default=None, description="Default: val_accuracy (classification), val_loss (regression)."
    )
    mode: Literal["max", "min"] | None = Field(
        default=None, description="Default: min for a loss or rmse, max for accuracy or r2."
    )
    resources: Resources = Field(default_factory=Resources)
    promote: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9_-]{0,30}$",
        description="Alias to point at this job's model if its test metric beats the "
        "alias's current model (test_accuracy, or test_loss for regression).",
    )
    max_concurrent_trials: int | None = Field(default=None, ge=1, le=10_000)
    packing: Packing | StrictBool = Field(
        default=True,
        description="Train configurations that share batch size, epochs and depth as "
        "packs (each still a trial of its own); false trains one per trial process.",
    )
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="Stop starting and running trials after this.",
    )
    stop: StopRules = Field(
        default_factory=StopRules,
        description="End the job early: at a target value of the metric, or when the "
        "best has not changed while a number of trials ended.",
    )
    continue_from: ContinueFrom | None = Field(
        default=None,
        description="Train an earlier job's trials on from their checkpoints, instead "
        "of the search (POST /jobs/{id}/continue writes it).",
    )
    warm_start: WarmStart | None = Field(
        default=None, description="Start from what earlier jobs learned."
    )

    @field_validator("search", "scheduler", mode="before")
    @classmethod
    def _name_alone(cls, value: Any, info: ValidationInfo) -> Any:
        """Accept ``"search": "optuna"`` for ``{"algorithm": "optuna"}``, and likewise."""
        if isinstance(value, str):
            return {"algorithm" if info.field_name == "search" else "type": value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        space = self.search_space
        sampled, gridded = space.named(*SAMPLED), space.named(Grid)
        if self.search.algorithm is None:
            self.search.algorithm = "random" if sampled else "grid"
        if self.search.algorithm == "grid" and sampled:
            raise ValueError(
                f"search 'grid' tries listed values only, but {', '.join(sampled)} "
                "is sampled; use search 'random' or 'optuna', or a grid"
            )
        if self.search.algorithm == "optuna" and gridded:
            raise ValueError(
                f"search 'optuna' cannot take a grid ({', '.join(gridded)}); "
                'use {"choice": [...]} for those parameters'
            )
        if self.warm_start is not None and self.continue_from is not None:
            raise ValueError(
                "warm_start and continue_from do not go together: a continued job trains "
                "the trials it names, and no others"
            )
        if self.metric is not None:
            implied = _task_of_metric(self.metric)
            if self.task is not None and implied not in (None, self.task):
                raise ValueError(f"metric {self.metric} is not a {self.task} metric")
            self.task = self.task or implied
        self._check_scheduler(space.most_epochs())
        space.scalers()  # a range of scalers is refused here, with what to use
        return self

    def _check_scheduler(self, most_epochs: int) -> None:
        scheduler = self.scheduler
        if scheduler.type == "fifo":
            return
        if scheduler.grace_period > most_epochs:
            raise ValueError(
                f"scheduler.grace_period ({scheduler.grace_period}) must be at most the "
                f"epochs a trial runs ({most_epochs})"
            )
        if scheduler.max_epochs is not None and not (
            scheduler.grace_period <= scheduler.max_epochs <= most_epochs
        ):
            raise ValueError(
                f"scheduler.max_epochs ({scheduler.max_epochs}) must lie between "
                f"grace_period ({scheduler.grace_period}) and the most epochs a trial "
                f"runs ({most_epochs})"
            )

    def objective(self, task: Task) -> tuple[str, Literal["max", "min"]]:
        """(metric, mode) for the job once its task is known. InvalidInputError if the
        metric does not belong to that task."""
        metric = self.metric or DEFAULT_METRIC_OF_TASK[task]
        if metric not in METRICS_OF_TASK[task]:
            raise InvalidInputError(
                f"metric {metric} does not apply to {task}; use one of "
                f"{', '.join(METRICS_OF_TASK[task])}"
            )
        return metric, self.mode or mode_of(metric)

    def pack_size_limit(self) -> int | None:
        """The spec's own cap on configurations per pack, if it sets one."""
        return self.packing.max_k if isinstance(self.packing, Packing) else None

    def most_epochs(self) -> int:
        """The most epochs a trial of the job can run."""
        if self.continue_from is not None:
            return self.continue_from.epochs
        return self.search_space.most_epochs()

    def trial_count(self) -> int:
        """How many trials the job will run."""
        if self.continue_from is not None:
            return len(self.continue_from.trials)
        if self.search.algorithm == "optuna":
            return self.search.num_samples
        return self.search_space.grid_size() * self.search.num_samples


def _task_of_metric(metric: str) -> Task | None:
    owners = [task for task, metrics in METRICS_OF_TASK.items() if metric in metrics]
    if len(owners) != 1:
        return None
    return "regression" if owners[0] == "regression" else "classification"


class JobEdit(_Strict):
    """What PATCH /jobs/{id} may change of a queued or running tuning job."""

    max_concurrent_trials: int | None = Field(
        default=None, ge=1, le=10_000, description="Raise or lower; a running job follows."
    )
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        allow_inf_nan=False,
        description="Extend (never shorten) the budget, counted from when its trials started.",
    )
    num_samples: int | None = Field(
        default=None,
        ge=1,
        description="Raise search.num_samples of a random or optuna search; a running job "
        "trains the new trials too (one that runs unpacked: while queued).",
    )
    priority: Priority | None = Field(
        default=None, description="A queued job moves to the back of that priority's line."
    )

    @field_validator("max_concurrent_trials", "time_budget_s", "num_samples", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true is not 1 here
            raise ValueError("a number is needed, not true or false")
        return value

    @model_validator(mode="after")
    def _something(self) -> JobEdit:
        if not self.model_fields_set:
            raise ValueError(
                "give at least one of max_concurrent_trials, time_budget_s, num_samples, priority"
            )
        if any(getattr(self, name) is None for name in self.model_fields_set):
            raise ValueError("a field of an edit cannot be null; leave it out instead")
        return self

    def applied_to(self, spec: JobSpec) -> JobSpec:
        """The spec as edited (InvalidInputError for what it refuses)."""
        changes = self.model_dump(exclude_unset=True)
        if "num_samples" in changes:
            if spec.continue_from is not None:
                raise InvalidInputError(
                    "num_samples: a continued job trains the trials it continues, and no others"
                )
            if spec.search.algorithm == "grid":
                raise InvalidInputError(
                    "num_samples: a grid search's trials are its points; num_samples can "
                    "be raised for random and optuna searches"
                )
            if changes["num_samples"] < spec.search.num_samples:
                raise InvalidInputError(
                    f"num_samples: {changes['num_samples']} is fewer than the job's "
                    f"{spec.search.num_samples}; it can only be raised"
                )
            search = spec.search.model_copy(update={"num_samples": changes.pop("num_samples")})
            changes["search"] = search
        budget = changes.get("time_budget_s")
        if budget is not None and spec.time_budget_s is not None and budget < spec.time_budget_s:
            raise InvalidInputError(
                f"time_budget_s: {budget} is less than the job's {spec.time_budget_s} s; "
                "it can only be extended"
            )
        return spec.model_copy(update=changes)
