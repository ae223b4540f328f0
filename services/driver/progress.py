"""A Tune callback that writes each trial's progress to the job's record in Redis."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from shared.jobs import BestTrial, JobStore, TrialRow

METRIC_NAMES = (
    "training_loss",
    "training_accuracy",
    "training_rmse",
    "val_loss",
    "val_accuracy",
    "val_rmse",
    "val_r2",
)


class ProgressToRedis(Callback):
    """Keeps ``GET /jobs/{id}`` and ``GET /jobs/{id}/trials`` current while Tune runs."""

    def __init__(self, store: JobStore, job_id: str, metric: str, mode: str) -> None:
        self._store = store
        self._job_id = job_id
        self._metric = metric
        self._mode = mode
        # A resumed job keeps what its earlier attempts recorded.
        self._best: BestTrial | None = store.get(job_id).best
        self._ended = {
            row.trial_id for row in store.trials(job_id) if row.state in ("TERMINATED", "ERROR")
        }

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._store.record_trial(self._job_id, _row(trial, "RUNNING"))

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        self._store.record_trial(self._job_id, _row(trial, "RUNNING", result))
        value = result.get(self._metric)
        if value is not None and self._improves(float(value)):
            self._best = BestTrial(
                trial_id=trial.trial_id,
                metric=self._metric,
                value=float(value),
                config=dict(trial.config),
            )
            self._store.record_progress(self._job_id, len(self._ended), self._best)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._ended.add(trial.trial_id)
        self._store.record_trial(self._job_id, _row(trial, "TERMINATED"))
        self._store.record_progress(self._job_id, len(self._ended), self._best)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._ended.add(trial.trial_id)
        self._store.record_trial(self._job_id, _row(trial, "ERROR", error=trial_error(trial)))
        self._store.record_progress(self._job_id, len(self._ended), self._best)

    def _improves(self, value: float) -> bool:
        if self._best is None:
            return True
        return value > self._best.value if self._mode == "max" else value < self._best.value


def trial_error(trial: Trial) -> str:
    """The last line of a failed trial's traceback: the error itself."""
    text = trial.get_error()
    if not text:
        return "the trial failed without an error message"
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)


def _row(
    trial: Trial, state: str, result: dict | None = None, error: str | None = None
) -> TrialRow:
    last = result if result is not None else (trial.last_result or {})
    return TrialRow(
        trial_id=trial.trial_id,
        state=state,
        config=dict(trial.config),
        metrics={m: float(last[m]) for m in METRIC_NAMES if m in last},
        iterations=int(last.get("training_iteration", 0) or 0),
        device=last.get("device"),
        error=error,
    )
