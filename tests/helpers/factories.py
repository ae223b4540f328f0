"""Specs, records and leases as the stores make them, for tests of the stores."""

from __future__ import annotations

import time
from pathlib import Path

from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.lease import Lease
from shared.registry import ModelRecord
from shared.spec import JobSpec

SPEC = JobSpec.model_validate({"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}})


BEST = BestTrial(trial_id="t1", metric="val_accuracy", value=0.9, config={})


def started(jobs: JobStore) -> Lease:
    """A new job, claimed: running."""
    job_id, _ = jobs.enqueue(SPEC)
    lease = jobs.claim("d1")
    assert lease is not None and lease.job_id == job_id
    return lease


def model_of(job_id: str, checkpoint_folder: Path) -> ModelRecord:
    return ModelRecord(
        id=job_id, job_id=job_id, checkpoint_uri=str(checkpoint_folder), config={},
        metric="val_accuracy", mode="max", validation_value=0.9, test_metrics={},
        feature_names=["f0", "f1", "f2", "f3"], classes=[0, 1, 2], created_at=time.time(),
    )  # fmt: skip


def spec(name: str = "job") -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": name,
            "dataset": {"builtin": "iris"},
            "search_space": {"lr": {"grid": [0.1, 0.01]}},
        }
    )


def record(model_id: str, test_accuracy: float, task: str = "classification") -> ModelRecord:
    metrics = (
        {"test_accuracy": test_accuracy}
        if task == "classification"
        else {"test_loss": test_accuracy}
    )
    return ModelRecord(
        id=model_id, job_id=model_id, checkpoint_uri=f"/ckpt/{model_id}", task=task,
        target="target", config={"lr": 0.1}, metric="val_accuracy", mode="max",
        validation_value=0.5, test_metrics=metrics, feature_names=["a", "b"],
        classes=[0, 1] if task == "classification" else [], created_at=time.time(),
    )  # fmt: skip
