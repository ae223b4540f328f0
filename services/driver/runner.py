"""Running one job: data in, tune.run, best trial scored on the test split, model out."""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import torch
from ray import tune

from services.driver import search
from services.driver.progress import ProgressToRedis, trial_error
from services.driver.trainable import tunefleet_trial
from shared.data import DatasetStore, PreparedData, load_frame, prepare, target_of
from shared.errors import TunefleetError
from shared.jobs import BestTrial, JobStore
from shared.model import ModelBundle
from shared.registry import ModelRecord, ModelRegistry
from shared.settings import Settings
from shared.spec import JobSpec
from shared.training import TrialPlan, evaluate

log = logging.getLogger(__name__)

# Progress goes to Redis, and to the log line by line: Tune's console tables and its
# warning about frequent experiment snapshots (num_to_keep=1) are noise here.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


class JobFailedError(TunefleetError):
    """Raised when a job's run ends without a usable model; the message says why."""


def run_job(
    job_id: str, spec: JobSpec, settings: Settings, jobs: JobStore, registry: ModelRegistry
) -> None:
    """Tune a job, register its best model and mark it succeeded.

    Raises a TunefleetError with a reason for the user when the job cannot succeed.
    """
    datasets = DatasetStore(settings.datasets_dir)
    target = target_of(spec.dataset, datasets)
    data = prepare(load_frame(spec.dataset, datasets), spec.dataset, target, spec.task)
    metric, mode = spec.objective(data.task)
    jobs.record_objective(job_id, data.task, metric, mode)
    seed = spec.search.seed if spec.search.seed is not None else spec.dataset.seed
    plan = TrialPlan(
        # Trials never see the test split: it scores the chosen model only.
        data=dataclasses.replace(data, x_test=data.x_test[:0], y_test=data.y_test[:0]),
        metric=metric,
        mode=mode,
        seed=seed,
        balance=spec.dataset.balance == "weighted_sampler",
        checkpoint_every_epoch=search.pauses_trials(spec),
    )
    started = time.monotonic()
    analysis = tune.run(
        # The data goes into Ray's object store once; trials read it from there.
        tune.with_parameters(tunefleet_trial, plan=plan),
        name=job_id,
        storage_path=str(settings.experiments_dir),
        config=search.tune_config(spec),
        num_samples=spec.search.num_samples,
        search_alg=search.search_algorithm(spec, seed),
        scheduler=search.scheduler(spec),
        metric=metric,
        mode=mode,
        time_budget_s=spec.time_budget_s,
        resources_per_trial={"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
        max_concurrent_trials=spec.max_concurrent_trials,
        checkpoint_config=tune.CheckpointConfig(
            num_to_keep=2 if plan.checkpoint_every_epoch else 1,
            checkpoint_score_attribute=metric,
            checkpoint_score_order=mode,
        ),
        reuse_actors=True,
        raise_on_failed_trial=False,
        callbacks=[ProgressToRedis(jobs, job_id, metric, mode)],
        verbose=0,
    )
    log.info("job %s: tune.run took %.1f s", job_id, time.monotonic() - started)

    best_trial = analysis.get_best_trial(metric, mode, scope="all")
    if best_trial is None:
        errors = [trial_error(t) for t in analysis.trials if t.status == t.ERROR]
        first = errors[0] if errors else "no trial reported a result"
        raise JobFailedError(f"all {len(analysis.trials)} trials failed; the first: {first}")
    checkpoint = analysis.get_best_checkpoint(best_trial, metric, mode)
    if checkpoint is None:
        raise JobFailedError(f"the best trial {best_trial.trial_id} left no checkpoint")

    test_metrics = _score_on_test(checkpoint.path, data)
    best = BestTrial(
        trial_id=best_trial.trial_id,
        metric=metric,
        value=float(best_trial.metric_analysis[metric][mode]),
        config=dict(best_trial.config),
    )
    registry.register(
        ModelRecord(
            id=job_id,
            job_id=job_id,
            checkpoint_uri=checkpoint.path,
            task=data.task,
            target=target,
            config=best.config,
            metric=metric,
            mode=mode,
            validation_value=best.value,
            test_metrics=test_metrics,
            feature_names=data.feature_names,
            classes=data.classes,
            created_at=time.time(),
        )
    )
    jobs.succeed(job_id, best, test_metrics)


def _score_on_test(checkpoint_dir: str, data: PreparedData) -> dict[str, float]:
    bundle = ModelBundle.load(checkpoint_dir)
    metrics = evaluate(
        bundle.model, torch.from_numpy(data.x_test), torch.from_numpy(data.y_test), data
    )
    return {f"test_{name}": value for name, value in metrics.items()}
