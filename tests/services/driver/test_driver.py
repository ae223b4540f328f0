"""The driver's engine on a real local Ray: every searcher and scheduler, regression, GPUs."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import ray
import redis
from ray import tune
from ray._private.internal_api import memory_summary

from services.driver import search
from services.driver.packed.network import member_bytes
from services.driver.packed.run import PackedRun
from services.driver.progress import TrialProgress
from services.driver.splits import prepare
from services.driver.training import TrialPlan
from shared.data import DatasetStore, load_frame
from shared.job_views import JobView
from shared.jobs import JobStore
from shared.model import ModelBundle
from shared.results import TrialRow
from shared.spec import JobEdit, JobSpec
from shared.storage import StoragePath

pytestmark = pytest.mark.ray

TINY = {"hidden_units": 16, "batch_size": 16, "epochs": 3}


@pytest.mark.parametrize(
    ("search", "space"),
    [
        ("grid", {"lr": {"grid": [0.01, 0.05]}}),
        ("random", {"lr": {"loguniform": [0.005, 0.1]}, "dropout": {"uniform": [0, 0.3]}}),
        ("optuna", {"lr": {"loguniform": [0.005, 0.1]}, "hidden_units": {"choice": [8, 16]}}),
    ],
)
def test_each_searcher_runs_a_tiny_job(engine: Any, search: str, space: dict) -> None:
    job, trials = engine(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {**TINY, **space},
            "search": {"algorithm": search, "num_samples": 2 if search != "grid" else 1, "seed": 5},
        }
    )
    assert job.state == "succeeded", job.error
    assert len(trials) == job.trials_total == 2
    assert all(t.state == "TERMINATED" and t.iterations == 3 for t in trials)
    assert job.task == "classification" and job.metric == "val_accuracy"
    assert engine.registry.get(job.id).test_metrics["test_accuracy"] > 0.3


@pytest.mark.parametrize("scheduler", ["asha", "hyperband", "median"])
def test_each_scheduler_runs_a_tiny_job(engine: Any, scheduler: str) -> None:
    job, trials = engine(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {**TINY, "epochs": 4, "lr": {"grid": [0.001, 0.01, 0.05, 0.1]}},
            "scheduler": {"type": scheduler, "grace_period": 1, "reduction_factor": 2},
        }
    )
    assert job.state == "succeeded", job.error
    assert len(trials) == 4 and job.trials_done == 4
    assert all(1 <= t.iterations <= 4 for t in trials)
    # HyperBand pauses and resumes trials, which packs cannot: the record says so.
    assert job.engine is not None
    assert job.engine.startswith("unpacked" if scheduler == "hyperband" else "packed")


class _SlowSaves(tune.Trainable):
    """Reports an epoch per step after ``delay`` seconds; each save takes 1.5 s."""

    def step(self) -> dict[str, Any]:
        time.sleep(self.config["delay"])
        return {"score": self.config["delay"]}

    def save_checkpoint(self, checkpoint_dir: str) -> dict[str, Any]:
        time.sleep(1.5)
        return {}

    def load_checkpoint(self, checkpoint: Any) -> None:
        pass


def test_hyperband_ends_when_a_trial_is_still_pausing_as_its_bracket_finishes(
    local_ray: None, tmp_path: Path
) -> None:
    # The first three trials share HyperBand's single-rung bracket (max_t 4, factor 2;
    # the fourth opens the next bracket); the fast two are told to pause at epoch 4 and
    # are still saving when the slow one finishes the bracket. Tune's own HyperBand
    # leaves those two paused for good, and the run goes on until its time budget.
    budget_s = 45
    spec = JobSpec.model_validate(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {"epochs": 4},
            "scheduler": {"type": "hyperband", "reduction_factor": 2},
        }
    )
    started = time.monotonic()
    analysis = tune.run(
        _SlowSaves,
        config={"delay": tune.grid_search([0.0, 0.01, 0.3, 0.02])},
        scheduler=search.scheduler(spec),
        metric="score",
        mode="max",
        resources_per_trial={"cpu": 0.5},
        time_budget_s=budget_s,
        storage_path=str(tmp_path),
        verbose=0,
    )
    assert time.monotonic() - started < budget_s, "the run ended only at its time budget"
    assert [t.status for t in analysis.trials] == ["TERMINATED"] * 4
    assert all(t.last_result["training_iteration"] <= 4 for t in analysis.trials)


def test_asha_stops_trials_early(engine: Any) -> None:
    space = {
        "hidden_units": 8,
        "batch_size": 32,
        "epochs": 9,
        # Good learning rates first: asynchronous ASHA can only stop a trial that
        # reaches a rung after better ones, so the weak ones come last.
        "lr": {"grid": [3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5]},
    }
    spec = {"dataset": {"builtin": "wine"}, "search_space": space, "metric": "val_loss"}
    fifo_job, fifo = engine(spec)
    asha_job, asha = engine(
        {**spec, "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3}}
    )
    assert fifo_job.state == asha_job.state == "succeeded"
    assert sum(t.iterations for t in fifo) == 8 * 9
    assert sum(t.iterations for t in asha) < 8 * 9
    assert any(t.iterations < 9 for t in asha)
    # Members of packs, stopped one by one.
    assert asha_job.engine is not None and asha_job.engine.startswith("packed")
    assert any(t.early_stopped for t in asha)


def test_same_seed_same_configs_and_metrics(engine: Any) -> None:
    spec = {
        "dataset": {"builtin": "iris"},
        "search_space": {
            **TINY,
            "lr": {"loguniform": [0.001, 0.1]},
            "dropout": {"uniform": [0, 0.5]},
        },
        "search": {"algorithm": "random", "num_samples": 3, "seed": 11},
    }
    _, first = engine(spec)
    _, second = engine(spec)
    assert [t.config for t in first] == [t.config for t in second]
    assert [t.metrics for t in first] == [t.metrics for t in second]
    assert len({t.config["lr"] for t in first}) == 3


def test_regression_on_diabetes_reaches_positive_r2(engine: Any) -> None:
    job, trials = engine(
        {
            "dataset": {"builtin": "diabetes"},
            "search_space": {"lr": 0.01, "hidden_units": 32, "dropout": 0.0, "epochs": 40},
            "metric": "val_r2",
        }
    )
    assert job.state == "succeeded", job.error
    assert job.task == "regression" and job.metric == "val_r2" and job.mode == "max"
    assert job.test_metrics is not None and job.test_metrics["test_r2"] > 0
    assert {"val_rmse", "val_r2", "val_loss"} <= set(trials[0].metrics)
    model = engine.registry.get(job.id)
    assert model.task == "regression" and model.classes == []


def test_gpu_trial_lands_on_the_gpu_node_and_falls_back_to_cpu(engine: Any) -> None:
    job, trials = engine(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {**TINY, "lr": {"grid": [0.01, 0.02]}},
            "resources": {"cpu": 1, "gpu": 0.5},
        }
    )
    assert job.state == "succeeded", job.error
    # Scheduled only because the node declares a GPU; no CUDA here, so it trained on the CPU.
    assert [t.device for t in trials] == ["cpu", "cpu"]


def test_time_budget_ends_the_job_with_what_finished(engine: Any) -> None:
    job, trials = engine(
        {
            "dataset": {"builtin": "digits"},
            "search_space": {"hidden_units": 64, "batch_size": 8, "epochs": 200, "lr": 0.001},
            "time_budget_s": 8,
        }
    )
    assert job.state == "succeeded", job.error
    assert 1 <= trials[0].iterations < 200
    assert job.stopped_by == "time_budget"


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_a_target_ends_the_job_once_a_trial_reaches_it(engine: Any, packing: bool) -> None:
    # Iris is learned to 0.5 validation accuracy within a few epochs; 12 x 30 epochs
    # one at a time would take far longer than the job is given to end.
    job, trials = engine(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {
                **TINY,
                "epochs": 30,
                "lr": {"grid": [0.01 + i / 1000 for i in range(12)]},
            },
            "stop": {"target": 0.5},
            "packing": packing,
            "max_concurrent_trials": 1,
        }
    )
    assert job.state == "succeeded", job.error
    assert job.stopped_by == "target"
    assert job.best is not None and job.best.value >= 0.5
    epochs = sum(trial.iterations for trial in trials)
    assert epochs < 12 * 30, epochs
    if not packing:  # one trial at a time: the others never started
        assert len(trials) < 12


def edit_once_running(
    jobs: JobStore, changes: dict[str, Any], after_s: float, seen: list[JobView]
) -> threading.Thread:
    """A thread that edits the running job (as PATCH /jobs/{id} does) ``after_s`` after
    it starts, and records its views every 0.2 s until it ends."""

    pending = dict(changes)

    def edit() -> None:
        edited_at = None
        while True:
            running = [job for job in jobs.recent() if job.state != "queued"]
            if running:
                job = running[0]
                seen.append(job)
                if job.state in ("succeeded", "failed", "cancelled"):
                    return
                edited_at = edited_at or time.monotonic() + after_s
                if time.monotonic() >= edited_at and pending:
                    assert isinstance(job.spec, JobSpec)
                    jobs.edit(job.id, JobEdit.model_validate(pending).applied_to(job.spec))
                    pending.clear()
            time.sleep(0.2)

    thread = threading.Thread(target=edit, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_a_running_job_follows_an_extended_time_budget(engine: Any, packing: bool) -> None:
    seen: list[JobView] = []
    watcher = edit_once_running(engine.jobs, {"time_budget_s": 12}, 1.0, seen)
    started = time.monotonic()
    # A minute's work or more at 1,000 epochs: only a budget ends it.
    job, _ = engine(
        {
            "dataset": {"builtin": "digits"},
            "search_space": {"hidden_units": 64, "batch_size": 8, "epochs": 1000, "lr": 0.001},
            "time_budget_s": 5,
            "packing": packing,
        }
    )
    took = time.monotonic() - started
    watcher.join(timeout=10)
    assert job.state == "succeeded", job.error
    assert job.stopped_by == "time_budget"
    # It ran past the budget it started with, to the one it was given.
    assert took >= 12, took
    assert isinstance(job.spec, JobSpec) and job.spec.time_budget_s == 12


def test_a_running_job_follows_a_raised_concurrency_limit(engine: Any) -> None:
    seen: list[JobView] = []
    watcher = edit_once_running(engine.jobs, {"max_concurrent_trials": 2}, 2.0, seen)
    job, trials = engine(
        {
            "dataset": {"builtin": "digits"},
            "search_space": {**TINY, "epochs": 12, "lr": {"grid": [0.01, 0.02, 0.03, 0.04]}},
            "packing": False,
            "max_concurrent_trials": 1,
        }
    )
    watcher.join(timeout=10)
    assert job.state == "succeeded", job.error and len(trials) == 4
    # One trial at a time until the edit, two at once after it.
    assert max(view.trials_running for view in seen) == 2, [v.trials_running for v in seen]


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_a_running_job_trains_the_samples_it_is_raised_to(engine: Any, algorithm: str) -> None:
    seen: list[JobView] = []
    watcher = edit_once_running(engine.jobs, {"num_samples": 4}, 1.0, seen)
    job, trials = engine(
        {
            "dataset": {"builtin": "digits"},
            "search_space": {**TINY, "epochs": 40, "lr": {"loguniform": [0.001, 0.1]}},
            "search": {"algorithm": algorithm, "num_samples": 2, "seed": 3},
            "max_concurrent_trials": 1,
        }
    )
    watcher.join(timeout=10)
    assert job.state == "succeeded", job.error
    assert job.trials_total == job.trials_done == len(trials) == 4
    assert all(t.iterations == 40 for t in trials)
    assert len({t.config["lr"] for t in trials}) == 4
    # The job had started with two: the edit came while they trained.
    assert any(view.trials_total == 2 and view.state == "running" for view in seen)


@pytest.mark.parametrize("packing", [True, False], ids=["from packed", "from unpacked"])
def test_a_continued_job_trains_the_best_trials_on_from_their_checkpoints(
    engine: Any, packing: bool
) -> None:
    space = {**TINY, "epochs": 4, "lr": {"grid": [0.003, 0.03]}}
    first, trials = engine({"dataset": {"builtin": "iris"}, "search_space": space,
                            "packing": packing})  # fmt: skip
    assert first.state == "succeeded", first.error
    ranked = sorted(trials, key=lambda t: -t.best_metrics["val_accuracy"])[:2]
    spec = {"dataset": {"builtin": "iris"}, "search_space": space,
            "continue_from": {"job": first.id, "trials": [t.trial_id for t in ranked],
                              "epochs": 7}}  # fmt: skip
    job, continued = engine(spec)
    assert job.state == "succeeded", job.error
    assert job.engine is not None and "continues trials of job" in job.engine
    by_source = {t.config["continues"]: t for t in continued}
    assert set(by_source) == {t.trial_id for t in ranked}
    for earlier in ranked:
        trial = by_source[earlier.trial_id]
        assert trial.iterations == 7 and not trial.early_stopped
        assert {k: v for k, v in trial.config.items() if k not in ("continues", "epochs")} == {
            k: v for k, v in earlier.config.items() if k != "epochs"
        }
        history = engine.jobs.results.history(job.id, trial.trial_id)
        before = engine.jobs.results.history(first.id, earlier.trial_id)
        # It went on from its best checkpoint (an epoch where the first job's trial had
        # its best value), not from scratch, and on to the epochs asked for.
        best = max(epoch["val_accuracy"] for epoch in before)
        at_best = {e["training_iteration"] for e in before if e["val_accuracy"] == best}
        assert history[0]["training_iteration"] - 1 in at_best
        assert history[-1]["training_iteration"] == 7
        assert history[0]["training_loss"] < before[0]["training_loss"]


def test_a_job_that_runs_every_trial_says_no_rule_ended_it(engine: Any) -> None:
    job, trials = engine(
        {"dataset": {"builtin": "iris"}, "search_space": TINY, "stop": {"target": 0.9999}}
    )
    assert job.state == "succeeded", job.error
    assert job.stopped_by is None and trials[0].iterations == TINY["epochs"]


def test_no_improvement_counts_trials_that_end_without_a_new_best(
    redis_client: redis.Redis,
) -> None:
    jobs = JobStore(redis_client)
    spec = JobSpec.model_validate(
        {"dataset": {"builtin": "iris"}, "stop": {"no_improvement": {"trials": 2}}}
    )
    jobs.enqueue(spec)
    lease = jobs.claim("driver-1")
    assert lease is not None
    progress = TrialProgress(jobs, lease, "val_accuracy", "max", spec.stop)

    def trial(trial_id: str, accuracy: float) -> None:
        result = {"val_accuracy": accuracy, "training_iteration": 1}
        progress.result(trial_id, {}, result)
        progress.end(trial_id, {}, result)

    trial("a", 0.7)  # the first best
    trial("b", 0.6)  # one without a new best
    trial("c", 0.8)  # a new best: the count starts again
    trial("d", 0.5)
    assert progress.stopped_by is None
    trial("e", 0.8)  # a tie is not a new best (the first trial keeps it)
    assert progress.stopped_by == "no_improvement"
    assert progress.best is not None and progress.best.trial_id == "c"


def test_packed_and_unpacked_jobs_look_the_same(engine: Any) -> None:
    spec = {
        "dataset": {"builtin": "wine"},
        "search_space": {
            **TINY,
            "lr": {"grid": [0.003, 0.03]},
            "hidden_units": {"grid": [8, 32]},
            "dropout": {"grid": [0.0, 0.3]},
        },
    }
    packed_job, packed = engine(spec)
    # Nothing holds a CPU once the job is done: packs run as tasks on idle workers.
    # (Ray's view of free resources lags a moment behind.)
    deadline = time.monotonic() + 10
    while ray.available_resources().get("CPU") != ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.1)
    unpacked_job, unpacked = engine({**spec, "packing": False})
    assert packed_job.engine is not None and packed_job.engine.startswith("packed")
    assert unpacked_job.engine == "unpacked: packing is off in the job spec"
    for job, trials in ((packed_job, packed), (unpacked_job, unpacked)):
        assert job.state == "succeeded", job.error
        assert job.trials_done == job.trials_total == 8
        assert all(t.state == "TERMINATED" and t.iterations == 3 for t in trials)
        assert all(t.node_id and t.device == "cpu" and t.time_total_s for t in trials)
        assert {frozenset(t.metrics) for t in trials} == {
            frozenset({"training_loss", "training_accuracy", "val_loss", "val_accuracy"})
        }
        model = engine.registry.get(job.id)
        assert model.config == job.best.config and model.test_metrics["test_accuracy"] > 0.5
        for trial in trials:
            history = engine.jobs.results.history(job.id, trial.trial_id)
            assert [epoch["training_iteration"] for epoch in history] == [1, 2, 3]
    assert sorted(map(str, (t.config for t in packed))) == sorted(
        map(str, (t.config for t in unpacked))
    )


def test_pack_size_follows_the_spec(engine: Any) -> None:
    job, trials = engine(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {**TINY, "lr": {"grid": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}},
            "packing": {"max_k": 2},
        }
    )
    assert job.state == "succeeded", job.error
    assert job.engine == "packed: 3 packs of up to 2 configurations"
    assert len(trials) == 6 and all(t.iterations == 3 for t in trials)


def test_packs_hold_as_many_members_as_their_memory_budget(engine: Any) -> None:
    # Iris: 4 inputs, 3 classes. A budget of two such members' bytes: packs of two, where
    # the cluster's two slots alone would make two packs of three.
    space = {"lr": {"grid": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]}, "hidden_units": 64}
    two = 2 * member_bytes(4, 3, hidden_units=64, hidden_layers=1, batch_size=16)
    spec = {
        "dataset": {"builtin": "iris"},
        "search_space": {**space, "batch_size": 16, "epochs": 2},
    }
    job, trials = engine(spec, pack_memory_bytes=two)
    assert job.state == "succeeded", job.error
    assert job.engine == "packed: 3 packs of up to 2 configurations"
    assert len(trials) == 6 and all(t.iterations == 2 for t in trials)
    job, _ = engine(spec)  # the nodes' memory holds them all
    assert job.engine == "packed: 2 packs of up to 3 configurations"


def test_an_operator_caps_the_trials_one_job_trains_at_once(engine: Any) -> None:
    learning_rates = [0.002, 0.004, 0.006, 0.008, 0.01, 0.012]
    job, trials = engine(
        {
            "dataset": {"builtin": "iris"},
            "search_space": {"lr": {"grid": learning_rates}, "epochs": 2},
            "max_concurrent_trials": 100,  # more than the operator allows
        },
        max_concurrent_trials_per_job=2,
    )
    assert job.state == "succeeded", job.error
    assert sorted(t.config["lr"] for t in trials) == learning_rates
    # Two configurations at a time: packs of two, one pack at a time.
    assert job.engine == "packed: 3 packs of up to 2 configurations"


def plasma_objects() -> int:
    """Objects in this Ray's object store (shared memory), as `ray memory` counts them."""
    summary = memory_summary(address=ray.get_runtime_context().gcs_address, stats_only=True)
    found = re.search(r"Plasma memory usage \d+ MiB, (\d+) objects", summary)
    assert found is not None, summary
    return int(found.group(1))


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_a_finished_job_leaves_nothing_in_the_object_store(engine: Any, packing: bool) -> None:
    # The digits' training split (276 KB of features) is too large to be inlined: it
    # goes to the object store's shared memory if it goes through the object store.
    before = plasma_objects()
    job, _ = engine(
        {
            "dataset": {"builtin": "digits"},
            "search_space": {"lr": {"grid": [0.01, 0.02]}, "hidden_units": 8, "epochs": 1},
            "packing": packing,
        }
    )
    assert job.state == "succeeded", job.error
    deadline = time.monotonic() + 10  # references are released asynchronously
    while plasma_objects() > before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert plasma_objects() <= before


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_the_scaler_is_tuned_like_any_other_parameter(engine: Any, packing: bool) -> None:
    spec = {
        "dataset": {"builtin": "wine"},
        "search_space": {**TINY, "scaler": {"grid": ["minmax", "quantile"]}},
        "packing": packing,
    }
    job, trials = engine(spec)
    assert job.state == "succeeded", job.error
    assert sorted(t.config["scaler"] for t in trials) == ["minmax", "quantile"]
    if packing:  # one pack per scaler: a pack's members share one prepared table
        assert job.engine is not None and job.engine.startswith("packed: 2 packs")
    model = engine.registry.get(job.id)
    bundle = ModelBundle.load(model.checkpoint_uri)
    # The model predicts through the preprocessing its own trial trained on.
    assert bundle.plan["scaler"] == model.config["scaler"] == job.best.config["scaler"]


# Twelve configurations in four packs of three of one kind, trained one pack at a time
# (a trial takes both CPUs): four learn, eight learn next to nothing. Packs take turns
# an epoch at a time, so ASHA judges every configuration at the first rung before any
# trains a second epoch: most of the eight stop there, and the packs left with one or
# two members merge.
THINNED = {
    "dataset": {"builtin": "wine"},
    "search_space": {
        "hidden_units": 8,
        "batch_size": 16,
        "epochs": 6,
        "lr": {"grid": [0.005, 1e-6, 2e-6, 0.01, 3e-6, 4e-6, 0.02, 5e-6, 6e-6, 0.04, 7e-6, 8e-6]},
    },
    "metric": "val_loss",
    "mode": "min",
    "scheduler": {"type": "asha", "grace_period": 1, "reduction_factor": 3},
    "packing": {"max_k": 3},
    "resources": {"cpu": 2},
}


STRONG = [0.005, 0.01, 0.02, 0.04]


def merges(experiment: Path) -> dict[int, int]:
    """Pack -> the pack it merged into, as the experiment's folder records them."""
    found = experiment.glob("packs/*/merged_into")
    return {int(p.parent.name): int(p.read_text()) for p in found}


def assert_thinned_out(trials: list[TrialRow]) -> None:
    assert len(trials) == 12 and all(t.state == "TERMINATED" for t in trials)
    assert {t.config["lr"] for t in trials if t.iterations == 6} >= set(STRONG)
    assert sum(t.iterations == 1 for t in trials) >= 6


def assert_trials_read_as_unmerged(engine: Any, job: JobView, trials: list[TrialRow]) -> None:
    """Every trial's table row, history, result file and checkpoint as a trial of an
    unmerged pack has them: epochs 1..n once each, its best epoch's checkpoint."""
    experiment = engine.settings.experiments_dir.local / job.id
    for trial in trials:
        history = engine.jobs.results.history(job.id, trial.trial_id)
        assert [e["training_iteration"] for e in history] == list(range(1, trial.iterations + 1))
        lines = (experiment / trial.trial_id / "result.json").read_text().splitlines()
        assert len(lines) == trial.iterations
        bundle = ModelBundle.load(experiment / trial.trial_id / "checkpoint_best")
        assert bundle.architecture["hidden_units"] == 8


def test_packs_thinned_by_early_stopping_merge_into_one(engine: Any) -> None:
    job, trials = engine(THINNED)
    assert job.state == "succeeded", job.error
    assert job.engine == "packed: 4 packs of up to 3 configurations"
    merged = merges(engine.settings.experiments_dir.local / job.id)
    assert merged and not set(merged) & set(merged.values()), merged
    assert_thinned_out(trials)
    assert_trials_read_as_unmerged(engine, job, trials)
    assert job.best is not None and job.best.config["lr"] == 0.04


def test_a_job_stopped_after_a_merge_resumes_with_the_merged_members(
    local_ray: None, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Stopped (as a driver that loses its lease stops) after packs merged, before the
    merged pack committed an epoch: the resumed run finds the members that moved in
    their old packs' states and ends as a run that was never stopped ends."""
    jobs = JobStore(redis_client)
    spec = JobSpec.model_validate(THINNED)
    job_id, _ = jobs.enqueue(spec)
    lease = jobs.claim("driver-1")
    assert lease is not None and lease.job_id == job_id
    data = prepare(load_frame(spec.dataset, DatasetStore(tmp_path)), spec.dataset, "target")
    plan = TrialPlan(data=data, metric="val_loss", mode="min", seed=spec.dataset.seed)
    experiment = StoragePath(tmp_path / job_id)

    def attempt(should_stop: Callable[[], bool]) -> PackedRun:
        progress = TrialProgress(jobs, lease, "val_loss", "min")
        run = PackedRun(job_id, spec, plan, experiment, progress, should_stop)
        run.plan()
        return run

    first = attempt(lambda: bool(merges(tmp_path / job_id)))
    assert first.run() is False
    ((_, into),) = merges(tmp_path / job_id).items()
    # The merged pack's first epoch may have been recorded before the stop was seen:
    # take that commit back, as if the driver died between the epoch's task saving the
    # merged state and the driver recording it. Its state after epoch 1 is still there
    # (states alternate between two files), and holds pack 0's own members only.
    committed = tmp_path / job_id / "packs" / f"{into:04d}" / "committed"
    assert committed.read_text() in ("1", "2")
    committed.write_text("1")

    assert attempt(lambda: False).run() is True
    trials = jobs.results.trials(job_id)
    assert_thinned_out(trials)
    for trial in trials:
        history = jobs.results.history(job_id, trial.trial_id)
        assert [e["training_iteration"] for e in history] == list(range(1, trial.iterations + 1))
