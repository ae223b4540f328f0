"""Faults with real processes and real signals: drivers killed, jobs cancelled, jobs at once.

Drivers run as `python -m services.driver` subprocesses on a local Ray that this module
starts, with a short lease so that a dead driver's job is reclaimed quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import redis

from shared.job_views import JobView
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.vocabulary import JobStatus
from tests.helpers.drivers import LEASE_S, Drivers, ended, submit, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def drivers(
    local_ray: str, redis_server: Any, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[Drivers]:
    env = {
        **os.environ,
        "RAY_ADDRESS": local_ray,
        "TUNEFLEET_REDIS_URL": redis_server.url,
        "TUNEFLEET_HOME": str(tmp_path),
        "TUNEFLEET_LEASE_S": str(LEASE_S),
        "TUNEFLEET_DRIVER_POLL_S": "0.2",
    }
    running = Drivers(env, tmp_path)
    yield running
    running.stop_all()


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_killed_driver_job_is_finished_by_a_new_driver(
    drivers: Drivers, store: JobStore, tmp_path: Path, packing: bool
) -> None:
    learning_rates = [0.002, 0.004, 0.006, 0.008, 0.01, 0.012]
    # Packs train all their members at once, so the packed job runs longer epochs to
    # be killed in its middle.
    epochs = 30 if packing else 6
    job_id = submit(
        store,
        {
            "dataset": {"builtin": "digits"},
            "search_space": {
                "lr": {"grid": learning_rates},
                "hidden_units": 32,
                "batch_size": 8 if packing else 16,
                "epochs": epochs,
            },
            "packing": packing,
        },
    )
    first = drivers.start()
    if packing:
        wait_until(
            lambda: any(t.iterations >= 3 for t in store.results.trials(job_id)),
            180,
            "three epochs reported",
        )
    else:
        wait_until(lambda: store.get(job_id).trials_done >= 2, 180, "two trials finished")
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert not store.get(job_id).state.is_terminal()

    drivers.start()
    wait_until(ended(store, job_id), 240, "the job ended")
    job = store.get(job_id)
    assert job.state is JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and job.trials_done == job.trials_total == 6
    trials = store.results.trials(job_id)
    assert sorted(t.config["lr"] for t in trials) == learning_rates
    experiment = tmp_path / "storage" / "experiments" / job_id
    trial_dirs = [p for p in experiment.iterdir() if p.is_dir() and p.name != "packs"]
    # Resumed, not restarted: the grid's 6 trials, no more.
    assert len(trial_dirs) == 6
    if packing:
        # Packs resume from the state saved after each epoch: no epoch runs twice.
        assert all(t.iterations == epochs for t in trials)
        assert all(len(store.results.history(job_id, t.trial_id)) == epochs for t in trials)
        assert job.engine is not None and job.engine.startswith("packed")
    else:
        # A trial running at the kill resumes from a checkpoint (taken when its metric
        # improved), so it may repeat epochs: at least 6 reported, not exactly 6.
        assert all(t.iterations >= 6 and t.state == "TERMINATED" for t in trials), trials
        # Once the job has ended, each trial keeps its best checkpoint only.
        assert all(len(list(folder.glob("checkpoint_*"))) == 1 for folder in trial_dirs)


def test_cancel_stops_a_running_job_and_frees_the_cpus(drivers: Drivers, store: JobStore) -> None:
    job_id = submit(
        store,
        {
            "dataset": {"builtin": "digits"},
            "search_space": {
                "lr": {"grid": [0.001, 0.002]},
                "hidden_units": 64,
                "batch_size": 8,
                "epochs": 500,
            },
        },
    )
    drivers.start()
    # Two trials on two CPUs: a pack each. The second may start an epoch later than the
    # first, and Ray's view of free resources lags, so both are waited for.
    wait_until(
        lambda: sum(t.iterations >= 1 for t in store.results.trials(job_id)) == 2,
        120,
        "both trials running",
    )
    wait_until(lambda: ray.available_resources().get("CPU", 0) < 1, 15, "both CPUs taken")
    store.cancel(job_id)
    took_s = wait_until(ended(store, job_id), 30, "the job ended")
    assert store.get(job_id).state is JobStatus.CANCELLED
    assert took_s <= 10
    wait_until(lambda: ray.available_resources().get("CPU", 0) == 2, 15, "CPUs freed")
    assert ModelRegistry(store._redis).find(job_id) is None


def test_two_jobs_at_once_each_get_their_own_results(drivers: Drivers, store: JobStore) -> None:
    small = {"lr": {"grid": [0.01, 0.02]}, "hidden_units": 16, "epochs": 12}
    iris = submit(store, {"dataset": {"builtin": "iris"}, "search_space": small})
    wine = submit(store, {"dataset": {"builtin": "wine"}, "search_space": small})
    drivers.start()
    drivers.start()
    wait_until(lambda: ended(store, iris)() and ended(store, wine)(), 240, "both jobs ended")
    jobs: dict[str, JobView] = {name: store.get(i) for name, i in (("iris", iris), ("wine", wine))}
    assert all(job.state is JobStatus.SUCCEEDED for job in jobs.values())
    assert jobs["iris"].driver != jobs["wine"].driver
    # They overlapped in time.
    assert jobs["iris"].started_at < jobs["wine"].finished_at  # type: ignore[operator]
    assert jobs["wine"].started_at < jobs["iris"].finished_at  # type: ignore[operator]
    registry = ModelRegistry(store._redis)
    assert len(registry.get(iris).feature_names) == 4
    assert len(registry.get(wine).feature_names) == 13
    assert {t.trial_id for t in store.results.trials(iris)}.isdisjoint(
        {t.trial_id for t in store.results.trials(wine)}
    )


def test_driver_check_follows_the_heartbeat(drivers: Drivers) -> None:
    def check() -> int:
        return subprocess.run(
            [sys.executable, "-m", "services.driver", "--check"],
            env=drivers.env,
            capture_output=True,
        ).returncode

    assert check() == 1
    driver = drivers.start()
    wait_until(lambda: check() == 0, 60, "a live driver")
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    wait_until(lambda: check() == 1, LEASE_S + 10, "the heartbeat expired")


# Long enough to be interrupted in its middle several times: 6 configurations in one
# pack, 30 epochs of the digits at batch size 8.
INTERRUPTED = {
    "dataset": {"builtin": "digits"},
    "search_space": {
        "lr": {"grid": [0.002, 0.004, 0.006, 0.008, 0.01, 0.012]},
        "hidden_units": 32,
        "batch_size": 8,
        "epochs": 30,
    },
}


def epochs_reported(store: JobStore, job_id: str) -> int:
    return max((t.iterations for t in store.results.trials(job_id)), default=0)


def held_by(store: JobStore, job_id: str, process: subprocess.Popen[bytes]) -> bool:
    job = store.get(job_id)
    return job.state is JobStatus.RUNNING and f"-{process.pid}-" in (job.driver or "")


def test_a_paused_driver_cannot_finish_a_job_another_driver_took(
    drivers: Drivers, store: JobStore, tmp_path: Path
) -> None:
    job_id = submit(store, INTERRUPTED)
    paused = drivers.start()
    wait_until(lambda: epochs_reported(store, job_id) >= 3, 180, "three epochs reported")
    paused.send_signal(signal.SIGSTOP)  # a long GC, a stalled VM: past its lease
    try:
        second = drivers.start()
        wait_until(lambda: held_by(store, job_id, second), 120, "the second driver took it")
        # The second driver has started the job's packs. (It can only train once the
        # first gives up the CPUs its Ray workers hold: a paused process returns none.)
        time.sleep(LEASE_S)
    finally:
        paused.send_signal(signal.SIGCONT)
    wait_until(ended(store, job_id), 240, "the job ended")
    job = store.get(job_id)
    assert job.state is JobStatus.SUCCEEDED, job.error
    assert job.attempts == 2 and f"-{second.pid}-" in (job.driver or "")
    assert job.trials_done == job.trials_total == 6
    models = [m for m in ModelRegistry(store._redis).recent() if m.job_id == job_id]
    assert len(models) == 1
    # The paused driver found its claim gone, stopped, and lives on for the next job.
    paused_log = (tmp_path / "driver-0.log").read_text()
    assert "lease lost" in paused_log or "has ended" in paused_log, paused_log[-3000:]
    assert "failed" not in paused_log.split("lease lost")[-1]
    assert paused.poll() is None
    # Every trial trained its epochs once, in the second driver's run.
    assert all(t.iterations == 30 for t in store.results.trials(job_id))


def test_stopped_drivers_hand_their_job_back_without_spending_attempts(
    drivers: Drivers, store: JobStore
) -> None:
    job_id = submit(store, INTERRUPTED)
    for restart in range(3):  # a deploy, `ray down`, Ctrl-C: more than max_attempts (3)
        driver = drivers.start()
        further = epochs_reported(store, job_id) + 2
        wait_until(
            lambda further=further: epochs_reported(store, job_id) >= further,  # type: ignore[misc]
            180,
            "epochs reported",
        )
        driver.send_signal(signal.SIGTERM)
        assert driver.wait(60) == 0
        job = store.get(job_id)
        assert job.state is JobStatus.QUEUED and job.attempts == 0, (restart, job)
    drivers.start()
    wait_until(ended(store, job_id), 240, "the job ended")
    job = store.get(job_id)
    assert job.state is JobStatus.SUCCEEDED, job.error
    assert job.attempts == 1
    # Each restart continued the packs where the last one stopped: no epoch twice.
    trials = store.results.trials(job_id)
    assert all(len(store.results.history(job_id, t.trial_id)) == 30 for t in trials)
