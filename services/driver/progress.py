"""A Tune callback that writes each trial's progress to Redis as results arrive."""

from __future__ import annotations

import math
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from shared.jobs import BestTrial, JobStore
from shared.results import TrialRow

METRIC_NAMES = (
    "training_loss",
    "training_accuracy",
    "training_rmse",
    "val_loss",
    "val_accuracy",
    "val_rmse",
    "val_r2",
)
# Higher is better for these; lower for the others.
HIGHER_IS_BETTER = {"training_accuracy", "val_accuracy", "val_r2"}


class ProgressToRedis(Callback):
    """Keeps the job, its trials table, each trial's history and the job's event
    stream current while Tune runs."""

    def __init__(self, store: JobStore, job_id: str, metric: str, mode: str) -> None:
        self._store = store
        self._results = store.results
        self._job_id = job_id
        self._metric = metric
        self._mode = mode
        # A resumed job keeps what its earlier attempts recorded.
        self._best: BestTrial | None = store.get(job_id).best
        rows = store.results.trials(job_id)
        self._ended = {row.trial_id for row in rows if row.state in ("TERMINATED", "ERROR")}
        self._best_metrics = {row.trial_id: row.best_metrics for row in rows}
        self._running: set[str] = set()

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._running.add(trial.trial_id)
        self._results.record_trial(self._job_id, self._row(trial, "RUNNING"))
        self._progress()

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        best = self._best_metrics.setdefault(trial.trial_id, {})
        reported = _finite_metrics(result)
        for name in METRIC_NAMES:
            if name in reported:
                value = reported[name]
                kept: float | None = best.get(name)
                higher = name in HIGHER_IS_BETTER
                if kept is None or (value > kept if higher else value < kept):
                    best[name] = value
        epoch: dict[str, float] = {
            "training_iteration": int(result.get("training_iteration", 0) or 0)
        }
        epoch.update(reported)
        self._results.record_trial(self._job_id, self._row(trial, "RUNNING", result), epoch)
        objective = reported.get(self._metric)
        if objective is not None and self._improves(objective):
            self._best = BestTrial(
                trial_id=trial.trial_id,
                metric=self._metric,
                value=objective,
                config=dict(trial.config),
            )
            self._progress()

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._end(trial, self._row(trial, "TERMINATED"))

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._end(trial, self._row(trial, "ERROR", error=trial_error(trial)))

    def _end(self, trial: Trial, row: TrialRow) -> None:
        self._ended.add(trial.trial_id)
        self._running.discard(trial.trial_id)
        self._results.record_trial(self._job_id, row)
        self._progress()

    def _progress(self) -> None:
        self._store.record_progress(self._job_id, len(self._ended), len(self._running), self._best)

    def _improves(self, value: float) -> bool:
        if self._best is None:
            return True
        return value > self._best.value if self._mode == "max" else value < self._best.value

    def _row(
        self, trial: Trial, state: str, result: dict | None = None, error: str | None = None
    ) -> TrialRow:
        last = result if result is not None else (trial.last_result or {})
        iterations = int(last.get("training_iteration", 0) or 0)
        epochs = trial.config.get("epochs")
        return TrialRow(
            trial_id=trial.trial_id,
            state=state,
            config=dict(trial.config),
            metrics=_finite_metrics(last),
            best_metrics=dict(self._best_metrics.get(trial.trial_id, {})),
            iterations=iterations,
            time_total_s=float(last["time_total_s"]) if "time_total_s" in last else None,
            node_id=last.get("node_id"),
            early_stopped=(
                state == "TERMINATED" and epochs is not None and 0 < iterations < int(epochs)
            ),
            device=last.get("device"),
            error=error,
        )


def _finite_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics of a result, without NaN or infinite values (a diverging trial
    reports them; JSON cannot hold them and no comparison with them means anything)."""
    found = {}
    for name in METRIC_NAMES:
        value = result.get(name)
        if isinstance(value, int | float) and math.isfinite(value):
            found[name] = float(value)
    return found


def trial_error(trial: Trial) -> str:
    """The last line of a failed trial's traceback: the error itself."""
    text = trial.get_error()
    if not text:
        return "the trial failed without an error message"
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else str(text)
