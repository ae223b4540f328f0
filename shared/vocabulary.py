"""The words tunefleet's API is spelled in, each defined once: the shapes of ids and
aliases, priorities, built-in datasets, tasks and their metrics, a job's states, and what
a not-found error can name. A leaf: it imports nothing of tunefleet's, so that any module
may import it."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

# A job's id: 32 hex digits (a UUID4's). A model's id is the id of the job that made it.
JOB_ID_PATTERN = r"^[0-9a-f]{32}$"
# What `tunefleet status` and GET /jobs?id_prefix= take: the first digits of a job id.
JOB_ID_PREFIX_PATTERN = r"^[0-9a-f]{1,32}$"
MODEL_ID_PATTERN = JOB_ID_PATTERN
# At most 31 characters, so that an alias can never be mistaken for a model id.
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,30}$"
# A model id or an alias, where a route takes either.
MODEL_REF_PATTERN = f"^({MODEL_ID_PATTERN[1:-1]}|{ALIAS_PATTERN[1:-1]})$"
# A dataset's id: a prefix of its content's SHA-256.
DATASET_ID_PATTERN = r"^[0-9a-f]{16,64}$"
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
DEFAULT_TENANT = "default"

# Queues in the order drivers take from them: every high job before a normal one.
Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[str, ...] = get_args(Priority)
DEFAULT_PRIORITY: Priority = "normal"

# Tables that ship with scikit-learn, named in a spec as {"builtin": name}.
BuiltinDataset = Literal["breast_cancer", "digits", "wine", "iris", "diabetes"]
BUILTIN_DATASETS: tuple[str, ...] = get_args(BuiltinDataset)

# What a column is to the network (shared.column_roles infers it; a job spec may set it).
Role = Literal["numeric", "categorical", "datetime", "ignore"]

Task = Literal["classification", "regression"]
# What ended a job before every trial had run (see JobSpec.stop and time_budget_s).
StopReason = Literal["target", "no_improvement", "time_budget"]
METRICS_OF_TASK: dict[str, tuple[str, ...]] = {
    "classification": ("val_accuracy", "val_loss", "training_accuracy", "training_loss"),
    "regression": ("val_loss", "val_rmse", "val_r2", "training_loss", "training_rmse"),
}
Metric = Literal[
    "val_accuracy",
    "val_loss",
    "training_accuracy",
    "training_loss",
    "val_rmse",
    "val_r2",
    "training_rmse",
]
METRICS: tuple[str, ...] = get_args(Metric)
# What a job optimises when its spec names no metric.
DEFAULT_METRIC_OF_TASK: dict[str, str] = {
    "classification": "val_accuracy",
    "regression": "val_loss",
}
# The held-out test metric two models are compared by, per task, and which way is better.
TEST_METRIC_OF_TASK: dict[str, tuple[str, Literal["max", "min"]]] = {
    "classification": ("test_accuracy", "max"),
    "regression": ("test_loss", "min"),
}
# Metrics that are better higher; every other metric (losses, RMSE) is better lower.
HIGHER_IS_BETTER = ("accuracy", "r2")


def mode_of(metric: str) -> Literal["max", "min"]:
    """Whether a metric is better higher ("max": accuracy, R^2) or lower ("min")."""
    return "max" if metric.endswith(HIGHER_IS_BETTER) else "min"


class JobStatus(StrEnum):
    """queued -> running -> succeeded | failed | cancelled (cancelling while trials stop)."""

    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def is_terminal(self) -> bool:
        """True once the job will not change state again."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Subject(StrEnum):
    """What a NotFoundError (or another error about one thing) is about. The HTTP edge
    adds, per subject, the route that lists or makes such things."""

    JOB = "job"
    TRIAL = "trial"
    DATASET = "dataset"
    MODEL = "model"
    ALIAS = "alias"
