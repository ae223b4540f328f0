"""Running one job: data in, tune.run, best trial scored on the test split, model out."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from services.driver import nodes, search, warm_start
from services.driver.context import JobContext
from services.driver.live_edits import LiveSpec
from services.driver.packed.run import PackedRun
from services.driver.packed.tasks import checkpoint_folder
from services.driver.prepared import PreparedData
from services.driver.progress import ProgressToRedis, TrialProgress, trial_error
from services.driver.splits import prepare
from services.driver.trainable import PLAN_FILE, tunefleet_trial, write_plan
from services.driver.training import TrialPlan, evaluate
from shared.data import DatasetStore, load_frame, target_of
from shared.errors import TunefleetError
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.lease import Lease
from shared.model import ModelBundle
from shared.registry import ModelRecord, ModelRegistry
from shared.settings import Settings
from shared.spec import JobSpec
from shared.storage import StoragePath
from shared.vocabulary import StopReason

log = logging.getLogger(__name__)

# Progress goes to Redis, and to the log line by line: Tune's console tables and its
# warning about frequent experiment snapshots (num_to_keep=2) are noise here.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


class JobFailedError(TunefleetError):
    """Raised when a job's run ends without a usable model; the message says why."""


class StopWhen(tune.Stopper):
    """Stops the whole experiment once ``should_stop`` says so (cancel, lost lease), or
    once one of the job's stop rules (``progress``) has ended it. Asking is cheap: the
    driver's check reads Redis at most every driver.CANCEL_CHECK_S, whoever asks how
    often.

    The trial whose result reaches the target is stopped first, on its own: Tune saves
    the checkpoint that came with that result before it ends the trial, where ending
    the whole experiment at once would drop the save. The rest stop once it has ended.
    Past the time budget likewise: each trial stops at its next result, and the rest
    at once when the best trial so far has ended (its checkpoint saved).
    """

    def __init__(
        self,
        should_stop: Callable[[], bool],
        progress: TrialProgress | None = None,
        budget_s: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._should_stop = should_stop
        self._progress = progress
        # The job's time budget as last edited, counted from this run's start.
        self._budget_s = budget_s
        self._started = time.monotonic()
        self._stop = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        if self._progress is not None and self._progress.reaches_target(result):
            return True
        if self._out_of_time():
            return True
        return self.stop_all()

    # Tune saves its stopper with the experiment state; the check reaches into this
    # driver's live state (Redis, threads), so what is saved is a stopper that never
    # stops. A resumed run is given a new one.
    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(lambda: False)  # type: ignore[misc]

    def _out_of_time(self) -> bool:
        budget_s = self._budget_s()
        return budget_s is not None and time.monotonic() - self._started >= budget_s

    def stop_all(self) -> bool:
        if self._out_of_time():
            if self._progress is None:
                return True
            self._progress.stop_for("time_budget")
        settled = self._progress is not None and self._progress.settled()
        self._stop = self._stop or settled or self._should_stop()
        return self._stop


class FollowEdits(tune.Callback):
    """Each step of the run, the searcher's concurrency limit from the spec as last
    edited (PATCH /jobs/{id}): raised, more trials start; lowered, none start until
    fewer run. Optuna's run (``generator``) takes a raised num_samples too, less the
    trials a warm start ``carried``."""

    def __init__(
        self,
        live: Callable[[], JobSpec],
        search_alg: Any,
        generator: SearchGenerator | None = None,
        carried: int = 0,
    ) -> None:
        self._live = live
        self._search_alg = search_alg
        self._generator = generator
        self._carried = carried

    def on_step_begin(self, iteration: int, trials: list[Any], **info: Any) -> None:
        spec = self._live()
        self._search_alg.max_concurrent = search.concurrency(spec, self._search_alg)
        if self._generator is not None:
            # Tune has no public setter: its total is fixed by tune.run's num_samples.
            wanted = spec.search.num_samples - self._carried
            self._generator._total_samples = max(self._generator.total_samples, wanted)


def run_job(context: JobContext, spec: JobSpec) -> None:
    """Tune a job, register its best model and mark it succeeded.

    A job run before (its driver died) resumes its experiment from storage: finished
    trials are kept, unfinished ones continue from their checkpoints. When
    ``should_stop`` turns true the trials stop and the job is left for the caller.
    Raises a TunefleetError with a reason for the user when the job cannot succeed,
    LeaseLostError when the job is no longer this driver's (nothing more is written).
    """
    lease, settings, jobs = context.lease, context.settings, context.jobs
    should_stop, tenant = context.should_stop, context.tenant
    spec = _within_operator_limits(spec, settings)
    data, by_scaler, target = _load_data(spec, settings, tenant)
    metric, mode = spec.objective(data.task)
    jobs.record_objective(lease, data.task, metric, mode)
    rows = len(data.y_train) + len(data.y_val) + len(data.y_test)
    jobs.record_data(lease, rows, data.rows_without_target)
    plan = _trial_plan(spec, data, by_scaler, metric, mode)
    live = LiveSpec(
        jobs, lease.job_id, spec, lambda edited: _within_operator_limits(edited, settings)
    )
    warm = warm_start.WarmPlan()
    if spec.continue_from is None:
        warm = warm_start.plan(
            spec,
            jobs,
            data.task,
            (metric, mode),
            plan.seed,
            settings.experiments_dir / lease.job_id,
        )
    job = _Job(lease, spec, plan, settings, jobs, should_stop, live, warm)
    found = _run_trials(job)
    if found is None:
        return
    best, checkpoint, stopped_by = found
    scaler = best.config.get("scaler")  # the best trial's data, its test split included
    test_metrics = _score_on_test(checkpoint, data if scaler is None else by_scaler[scaler])
    record = ModelRecord(
        id=lease.job_id,
        job_id=lease.job_id,
        checkpoint_uri=checkpoint.uri,
        task=data.task,
        target=target,
        config=best.config,
        metric=metric,
        mode=mode,
        validation_value=best.value,
        test_metrics=test_metrics,
        feature_names=list(data.columns),
        columns=data.columns,
        classes=data.classes,
        created_at=time.time(),
        tenant=tenant,
    )
    _register(record, spec, context.registry, lease)
    jobs.succeed(lease, best, test_metrics, stopped_by)


def _load_data(
    spec: JobSpec, settings: Settings, tenant: str
) -> tuple[PreparedData, dict[str, PreparedData], str]:
    """The job's dataset split and prepared with the dataset's scaler, prepared again
    with each scaler the search space tries (the same rows in the same splits), and its
    target column."""
    datasets = DatasetStore(settings.datasets_of(tenant))
    target = target_of(spec.dataset, datasets)
    # The limits again: they may have been lowered since the upload.
    frame = load_frame(
        spec.dataset,
        datasets,
        max_rows=settings.max_dataset_rows,
        max_columns=settings.max_dataset_columns,
    )
    by_scaler = {
        scaler: prepare(
            frame,
            spec.dataset.model_copy(update={"scaler": scaler}),
            target,
            spec.task,
            settings.max_classes,
        )
        for scaler in spec.search_space.scalers()
    }
    data = prepare(frame, spec.dataset, target, spec.task, settings.max_classes)
    return data, by_scaler, target


def _trial_plan(
    spec: JobSpec,
    data: PreparedData,
    by_scaler: dict[str, PreparedData],
    metric: str,
    mode: str,
) -> TrialPlan:
    """What every trial of the job trains on and reports."""

    def without_test(prepared: PreparedData) -> PreparedData:
        # Trials never see the test split: it scores the chosen model only.
        return dataclasses.replace(prepared, x_test=prepared.x_test[:0], y_test=prepared.y_test[:0])

    return TrialPlan(
        data=without_test(data),
        by_scaler={scaler: without_test(prepared) for scaler, prepared in by_scaler.items()},
        metric=metric,
        mode=mode,
        seed=spec.search.seed if spec.search.seed is not None else spec.dataset.seed,
        balance=spec.dataset.balance == "weighted_sampler",
        checkpoint_every_epoch=search.pauses_trials(spec),
    )


# The best trial, its checkpoint folder, and the rule that ended the job early, if any.
_Found = tuple[BestTrial, StoragePath, StopReason | None]


def _run_trials(job: _Job) -> _Found | None:
    """Packs of configurations where the spec allows, else a Tune trial each; the best
    trial and its checkpoint, or None once the job was told to stop."""
    unpacked_reason = search.unpacked_reason(job.spec)
    progress = TrialProgress(job.jobs, job.lease, job.plan.metric, job.plan.mode, job.spec.stop)
    warm_start.carry(job.warm, progress, job.jobs)
    if job.warm.runs_nothing():
        job.jobs.record_engine(job.lease, "none: every configuration was carried over")
        return _carried_best(job, progress)
    if unpacked_reason is None:
        return _run_packed(job, progress)
    job.jobs.record_engine(job.lease, f"unpacked: {unpacked_reason}")
    return _run_unpacked(job, progress)


def _register(record: ModelRecord, spec: JobSpec, registry: ModelRegistry, lease: Lease) -> None:
    """The job's model in the registry, and its alias moved if the spec asks and the
    model tests better."""
    registry.register(record, lease)
    if spec.promote is not None:
        promoted = registry.promote_if_better(spec.promote, record, lease)
        log.info("job %s: alias %s %s", record.id, spec.promote, "moved" if promoted else "kept")


def _within_operator_limits(spec: JobSpec, settings: Settings) -> JobSpec:
    """The spec with at most ``max_concurrent_trials_per_job`` trials at once, whatever
    it asks: one job cannot take every slot of a cluster that others share."""
    cap = settings.max_concurrent_trials_per_job
    if spec.max_concurrent_trials is not None and spec.max_concurrent_trials <= cap:
        return spec
    return spec.model_copy(update={"max_concurrent_trials": cap})


@dataclasses.dataclass(frozen=True)
class _Job:
    """A claimed job as its engines run it."""

    lease: Lease
    spec: JobSpec
    plan: TrialPlan
    settings: Settings
    jobs: JobStore
    should_stop: Callable[[], bool]
    # The spec as last edited: concurrency and time budget, followed while running.
    live: Callable[[], JobSpec]
    # Trials carried over from earlier jobs, and what is left to train.
    warm: warm_start.WarmPlan


def _carried_best(job: _Job, progress: TrialProgress) -> _Found | None:
    """The job's best trial if it is one carried over (its checkpoint copied into the
    job's folder by the warm start), else None."""
    best = progress.best
    if best is None or best.trial_id not in job.warm.carried_ids:
        return None
    experiment = job.settings.experiments_dir / job.lease.job_id
    return best, checkpoint_folder(experiment, best.trial_id), progress.stopped_by


def _run_packed(job: _Job, progress: TrialProgress) -> _Found | None:
    """The trials as packs on warm Ray workers; None if stopped before the end."""
    lease, spec, plan, settings, jobs = job.lease, job.spec, job.plan, job.settings, job.jobs
    job_id = lease.job_id
    run = PackedRun(
        job_id, spec, plan, settings.experiments_dir / job_id, progress, job.should_stop,
        autoscaler_slots=nodes.autoscaler_slots(spec.resources, settings.autoscaler_config),
        memory_bytes=settings.pack_memory_bytes, live_spec=job.live,
        configurations=job.warm.to_run,
    )  # fmt: skip
    jobs.record_engine(lease, run.plan())
    started = time.monotonic()
    finished = run.run()
    log.info("job %s: its packs took %.1f s", job_id, time.monotonic() - started)
    if not finished or job.should_stop():
        return None
    found = run.best()
    if found is None:
        first = run.errors[0] if run.errors else "no trial reported a result"
        raise JobFailedError(f"all {spec.trial_count()} trials failed; the first: {first}")
    return (*found, progress.stopped_by)


def _run_unpacked(job: _Job, progress: TrialProgress) -> _Found | None:
    """One Tune trial per configuration, with tune.run; None if stopped before the end."""
    lease, plan, settings, should_stop = job.lease, job.plan, job.settings, job.should_stop
    job_id, metric, mode = lease.job_id, plan.metric, plan.mode
    experiment = settings.experiments_dir / job_id
    # A job run before resumes its experiment (AUTO: finished trials kept, the rest
    # continue from their checkpoints); a new one starts without the noise Tune logs
    # when asked to resume what does not exist.
    resume = "AUTO" if _tune_ran(experiment) else None
    # The trials read the data from the job's folder (see trainable.write_plan). The
    # trainable is registered under the job's own name, so that jobs running at once on
    # one cluster never pick up each other's trainable (and data).
    plan_file = experiment / PLAN_FILE
    write_plan(plan, plan_file)
    continued = _continued_trials(job) if job.spec.continue_from is not None else None
    checkpoints = continued[1] if continued is not None else None

    def trial(config: dict[str, Any]) -> None:
        tunefleet_trial(config, plan_file, checkpoints)

    trainable_name = f"tunefleet_{job_id}"
    tune.register_trainable(trainable_name, trial)
    started = time.monotonic()
    try:
        analysis = _tune_run(job, trainable_name, resume, progress, continued)
    finally:
        plan_file.unlink(missing_ok=True)
    took = time.monotonic() - started
    log.info("job %s: tune.run took %.1f s", job_id, took)
    if should_stop():
        return None
    _keep_best_checkpoints(analysis, metric, mode, settings.experiments_dir)
    carried = _carried_best(job, progress)
    if carried is not None:
        return carried
    best_trial = analysis.get_best_trial(metric, mode, scope="all")
    if best_trial is None:
        errors = [trial_error(t) for t in analysis.trials if t.status == t.ERROR]
        first = errors[0] if errors else "no trial reported a result"
        raise JobFailedError(f"all {len(analysis.trials)} trials failed; the first: {first}")
    checkpoint = analysis.get_best_checkpoint(best_trial, metric, mode)
    if checkpoint is None:
        raise JobFailedError(f"the best trial {best_trial.trial_id} left no checkpoint")
    best = BestTrial(
        trial_id=best_trial.trial_id,
        metric=metric,
        value=float(best_trial.metric_analysis[metric][mode]),
        config=dict(best_trial.config),
    )
    return best, settings.experiments_dir.at(checkpoint.path), progress.stopped_by


def _tune_run(
    job: _Job,
    trainable_name: str,
    resume: str | None,
    progress: TrialProgress,
    continued: tuple[list[dict[str, Any]], dict[str, StoragePath]] | None = None,
) -> Any:
    """tune.run over the registered trainable, one trial per configuration (or per
    earlier trial ``continued``); it ends early once the job is told to stop, or one of
    its stop rules ends it."""
    lease, spec, plan, settings = job.lease, job.spec, job.plan, job.settings
    metric, mode = plan.metric, plan.mode
    experiments = settings.experiments_dir
    search_alg: Any
    if continued is not None:
        param_space, search_alg, scheduler = search.continued_search(spec, continued[0])
        samples = len(continued[0])
    else:
        param_space, scheduler = search.tune_config(spec), search.scheduler(spec)
        warm = job.warm
        search_alg = search.search_algorithm(spec, plan.seed, warm.to_run, warm.told, warm.first)
        samples = warm.trials_to_run()
    search_alg, generator = _following_edits(search_alg, spec)
    follow = FollowEdits(job.live, search_alg, generator, len(job.warm.carried))
    return tune.run(
        trainable_name,
        name=lease.job_id,
        resume=resume,
        stop=StopWhen(job.should_stop, progress, lambda: job.live().time_budget_s),
        # A bucket goes to Tune as its filesystem (the endpoint with it) and a path in it.
        storage_path=experiments.path,
        storage_filesystem=experiments.filesystem,
        config=param_space,
        num_samples=samples,
        search_alg=generator or search_alg,
        scheduler=scheduler,
        metric=metric,
        mode=mode,
        resources_per_trial={"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        checkpoint_config=tune.CheckpointConfig(
            # Tune deletes checkpoints past num_to_keep before its next experiment
            # snapshot names the newer one, so a driver killed in between resumes a
            # trial from a checkpoint that is gone (the trial then fails). So every
            # checkpoint stays while the run goes on (they are taken on improvement
            # only), and the run's end keeps each trial's best; trials that pause every
            # epoch (HyperBand) keep two.
            num_to_keep=2 if plan.checkpoint_every_epoch else None,
            checkpoint_score_attribute=metric,
            checkpoint_score_order=mode,
        ),
        reuse_actors=True,
        raise_on_failed_trial=False,
        callbacks=[ProgressToRedis(progress), follow],
        verbose=0,
    )


def _following_edits(search_alg: Any, spec: JobSpec) -> tuple[Any, SearchGenerator | None]:
    """The run's searcher with a concurrency limit that can move (tune.run's own is
    fixed once given), and for Optuna the SearchGenerator around it, whose trial count
    can move too (tune.run wraps a Searcher in one; here it is made where it can be
    reached)."""
    if isinstance(search_alg, Searcher):  # Optuna: Tune's limiter, whose limit can move
        limited = ConcurrencyLimiter(search_alg, search.concurrency(spec, search_alg))
        return limited, SearchGenerator(limited)
    search_alg.max_concurrent = search.concurrency(spec, search_alg)
    return search_alg, None


def _continued_trials(job: _Job) -> tuple[list[dict[str, Any]], dict[str, StoragePath]]:
    """The configurations of the earlier job's trials that this one continues, each with
    CONTINUES_KEY, and each one's checkpoint folder by that key. JobFailedError names a
    trial that is gone, or whose checkpoint retention has removed."""
    source = job.spec.continue_from
    assert source is not None
    rows = {row.trial_id: row for row in job.jobs.results.trials(source.job)}
    experiments = job.settings.experiments_dir
    configs, checkpoints = [], {}
    for trial_id in source.trials:
        row = rows.get(trial_id)
        checkpoint = (
            warm_start.trial_checkpoint(experiments, source.job, row) if row is not None else None
        )
        if row is None or checkpoint is None:
            missing = "no such trial" if row is None else "its checkpoint is gone"
            raise JobFailedError(
                f"trial {trial_id} of job {source.job} cannot go on: {missing} (an ended "
                "job's checkpoints other than its model's are removed after "
                "TUNEFLEET_RETENTION_DAYS)"
            )
        configs.append({**row.config, search.CONTINUES_KEY: trial_id})
        checkpoints[trial_id] = checkpoint
    return configs, checkpoints


def _tune_ran(experiment: StoragePath) -> bool:
    """Whether Tune has run the experiment before (its state file is there); the
    folder alone may hold a warm start's checkpoint."""
    return experiment.is_dir() and any(
        entry.name.startswith("experiment_state") for entry in experiment.entries()
    )


def _keep_best_checkpoints(analysis: Any, metric: str, mode: str, experiments: StoragePath) -> None:
    """Remove every checkpoint of each trial but its best, once the run has ended."""
    for trial in analysis.trials:
        best = analysis.get_best_checkpoint(trial, metric, mode)
        if best is None:
            continue
        kept = experiments.at(best.path)
        for entry in kept.parent.entries():
            if entry.is_dir and entry.name.startswith("checkpoint_") and entry.path != kept:
                with contextlib.suppress(OSError):
                    entry.path.rmtree()


def _score_on_test(checkpoint_dir: StoragePath, data: PreparedData) -> dict[str, float]:
    bundle = ModelBundle.load(checkpoint_dir)
    metrics = evaluate(
        bundle.model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test), data
    )
    if data.target_transform == "log":
        # Trials compare each other on the log scale they learn on; the chosen model's
        # test figures are in the target's own units, as its predictions are.
        metrics = _regression_metrics(bundle, data)
    return {f"test_{name}": value for name, value in metrics.items()}


def _regression_metrics(bundle: ModelBundle, data: PreparedData) -> dict[str, float]:
    predicted = np.asarray(bundle.predict_encoded(data.x_test)[0], dtype=np.float64)
    learned = data.y_test.astype(np.float64) * data.target_std + data.target_mean
    actual = np.expm1(learned) if data.target_transform == "log" else learned
    mse = float(np.mean((predicted - actual) ** 2))
    total = float(np.sum((actual - actual.mean()) ** 2))
    r2 = 1.0 - mse * len(actual) / total if total else 0.0
    return {"loss": mse, "rmse": math.sqrt(mse), "r2": r2}
