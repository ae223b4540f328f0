"""A Tune callback that writes each trial's progress to Redis as results arrive."""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from shared.errors import LeaseLostError
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.lease import Lease
from shared.results import TrialRow
from shared.spec import StopRules
from shared.vocabulary import METRICS, StopReason, mode_of


class TrialProgress:
    """Keeps the job, its trials table, each trial's history and the job's event
    stream current while trials run; Tune's callback and the packed engine feed it.
    Every write shows the driver's lease: LeaseLostError once the job is no longer its."""

    def __init__(
        self,
        store: JobStore,
        lease: Lease,
        metric: str,
        mode: str,
        rules: StopRules | None = None,
    ) -> None:
        self._store = store
        self._results = store.results
        self._lease = lease
        job_id = self._job_id = lease.job_id
        self._metric = metric
        self._mode = mode
        # A resumed job keeps what its earlier attempts recorded.
        self.best: BestTrial | None = store.get(job_id).best
        rows = store.results.trials(job_id)
        self.ended = {row.trial_id for row in rows if row.state in ("TERMINATED", "ERROR")}
        self._best_metrics = {row.trial_id: row.best_metrics for row in rows}
        self._running: set[str] = set()
        # The job's stop rules: which one has ended it, if any (the engines ask).
        self._rules = rules or StopRules()
        self.stopped_by: StopReason | None = None
        self._ended_by: str | None = None  # the trial whose result reached the target
        self._best_at_last_end = self.best
        self._ended_without_new_best = 0

    def rows(self) -> list[TrialRow]:
        """The job's trials as recorded so far (by earlier attempts too)."""
        return self._results.trials(self._job_id)

    def history(self, trial_id: str) -> list[dict[str, Any]]:
        """A trial's recorded epochs, first to last."""
        return self._results.history(self._job_id, trial_id)

    def start(self, trial_id: str, config: dict[str, Any], last: dict[str, Any]) -> None:
        self._running.add(trial_id)
        self._store.record_trial(self._lease, self._row(trial_id, config, "RUNNING", last), None)
        self._progress()

    def result(self, trial_id: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        best = self._best_metrics.setdefault(trial_id, {})
        reported = _finite_metrics(result)
        for name in METRICS:
            if name in reported:
                value = reported[name]
                kept: float | None = best.get(name)
                higher = mode_of(name) == "max"
                if kept is None or (value > kept if higher else value < kept):
                    best[name] = value
        epoch: dict[str, float] = {
            "training_iteration": int(result.get("training_iteration", 0) or 0)
        }
        epoch.update(reported)
        row = self._row(trial_id, config, "RUNNING", result)
        self._store.record_trial(self._lease, row, epoch)
        objective = reported.get(self._metric)
        if objective is not None and self._improves(objective, trial_id):
            self.best = BestTrial(
                trial_id=trial_id, metric=self._metric, value=objective, config=dict(config)
            )
            self._progress()
        if self.reaches_target(result):
            self._ended_by = self._ended_by or trial_id
            self.stop_for("target")

    def carry(self, trials: list[tuple[TrialRow, list[dict[str, Any]]]]) -> None:
        """Earlier jobs' finished trials counted as this job's (a warm start): each row
        and its epochs recorded, any may be the best, a target one reached ends the job;
        the job's progress written once for them all."""
        for row, history in trials:
            for epoch in history:
                self._store.record_trial(self._lease, row, epoch)
            self._store.record_trial(self._lease, row, None)
            self.ended.add(row.trial_id)
            self._best_metrics[row.trial_id] = dict(row.best_metrics)
            value = row.best_metrics.get(self._metric)
            if value is not None and self._improves(value, row.trial_id):
                self.best = BestTrial(
                    trial_id=row.trial_id, metric=self._metric, value=value, config=dict(row.config)
                )
                self._best_at_last_end = self.best
            if value is not None and self.reaches_target({self._metric: value}):
                self.stop_for("target")
        if trials:
            self._progress()

    def reaches_target(self, result: dict[str, Any]) -> bool:
        """Whether ``result`` reaches the job's target (if it has one)."""
        objective = _finite_metrics(result).get(self._metric)
        target = self._rules.target
        if objective is None or target is None:
            return False
        return objective >= target if self._mode == "max" else objective <= target

    def settled(self) -> bool:
        """A stop rule has ended the job, and the trial whose checkpoint must be kept
        has ended too (its checkpoint saved): the one whose result reached the target,
        or, past the time budget, the best so far. The rest may stop now."""
        if self.stopped_by is None:
            return False
        kept = self._ended_by
        if self.stopped_by == "time_budget":
            if self.best is None:  # a first result may be on its way, its checkpoint with it
                return not self._running
            kept = self.best.trial_id
        return kept is None or kept in self.ended

    def end(
        self,
        trial_id: str,
        config: dict[str, Any],
        last: dict[str, Any],
        error: str | None = None,
    ) -> None:
        """The trial ended: TERMINATED, or ERROR with ``error``."""
        state = "ERROR" if error is not None else "TERMINATED"
        self.ended.add(trial_id)
        self._running.discard(trial_id)
        row = self._row(trial_id, config, state, last, error)
        self._store.record_trial(self._lease, row, None)
        self._progress()
        self._count_towards_no_improvement()

    def stop_for(self, reason: StopReason) -> None:
        """The job ends early for ``reason`` (the first reason found stays)."""
        self.stopped_by = self.stopped_by or reason

    def _count_towards_no_improvement(self) -> None:
        """A trial ended: one more without a new best, unless the best has changed
        since the last trial ended."""
        if self.best != self._best_at_last_end:
            self._best_at_last_end = self.best
            self._ended_without_new_best = 0
        else:
            self._ended_without_new_best += 1
        rule = self._rules.no_improvement
        if rule is not None and self._ended_without_new_best >= rule.trials:
            self.stop_for("no_improvement")

    def _progress(self) -> None:
        self._store.record_progress(self._lease, len(self.ended), len(self._running), self.best)

    def _improves(self, value: float, trial_id: str) -> bool:
        if self.best is None:
            return True
        if value == self.best.value:  # a tie goes to the first trial, as tables sort it
            return trial_id < self.best.trial_id
        return value > self.best.value if self._mode == "max" else value < self.best.value

    def _row(
        self,
        trial_id: str,
        config: dict[str, Any],
        state: str,
        last: dict[str, Any],
        error: str | None = None,
    ) -> TrialRow:
        iterations = int(last.get("training_iteration", 0) or 0)
        epochs = config.get("epochs")
        return TrialRow(
            trial_id=trial_id,
            state=state,
            config=dict(config),
            metrics=_finite_metrics(last),
            best_metrics=dict(self._best_metrics.get(trial_id, {})),
            iterations=iterations,
            time_total_s=float(last["time_total_s"]) if "time_total_s" in last else None,
            node_id=last.get("node_id"),
            early_stopped=(
                state == "TERMINATED" and epochs is not None and 0 < iterations < int(epochs)
            ),
            device=last.get("device"),
            error=error,
        )


class ProgressToRedis(Callback):
    """TrialProgress fed by Tune as its trials start, report and end. A refused write
    (the lease is lost) is not Tune's error: the lease is marked lost, and the job's
    stopper ends the run."""

    def __init__(self, progress: TrialProgress) -> None:
        self._progress = progress

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        with _refused_writes_ignored():
            self._progress.start(trial.trial_id, trial.config, trial.last_result or {})

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any
    ) -> None:
        with _refused_writes_ignored():
            self._progress.result(trial.trial_id, trial.config, result)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        with _refused_writes_ignored():
            self._progress.end(trial.trial_id, trial.config, trial.last_result or {})

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        error = trial_error(trial)
        with _refused_writes_ignored():
            self._progress.end(trial.trial_id, trial.config, trial.last_result or {}, error)


_refused_writes_ignored = functools.partial(contextlib.suppress, LeaseLostError)


def _finite_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The metrics of a result, without NaN or infinite values (a diverging trial
    reports them; JSON cannot hold them and no comparison with them means anything)."""
    found = {}
    for name in METRICS:
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
