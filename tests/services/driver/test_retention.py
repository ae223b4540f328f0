"""Retention of experiment folders, on real job and model records in a real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from services.driver.retention import sweep_batches, sweep_experiments
from shared.jobs import JobStore
from shared.model import CHECKPOINT_FILE, ModelBundle
from shared.registry import ModelRegistry
from tests.helpers.factories import BEST, SPEC, model_of, started
from tests.helpers.models import payload, saved


@pytest.fixture
def jobs(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


@pytest.fixture
def registry(redis_client: redis.Redis) -> ModelRegistry:
    return ModelRegistry(redis_client)


def write(path: Path, content: bytes = b"x" * 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def checkpoint(folder: Path) -> Path:
    """A loadable checkpoint folder, as the trainable writes one."""
    write(folder / CHECKPOINT_FILE, saved(payload()))
    return folder


def files_below(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_old_finished_jobs_keep_only_their_models_checkpoint(
    tmp_path: Path, jobs: JobStore, registry: ModelRegistry
) -> None:
    experiments = tmp_path / "experiments"
    # A packed job that succeeded: its model is one trial's best checkpoint.
    packed = started(jobs)
    packed_dir = experiments / packed.job_id
    kept = checkpoint(packed_dir / "t1" / "checkpoint_best")
    write(packed_dir / "t1" / "result.json")
    checkpoint(packed_dir / "t2" / "checkpoint_best")
    write(packed_dir / "packs" / "pack-0.pt", b"y" * 1000)
    registry.register(model_of(packed.job_id, kept), packed)
    jobs.succeed(packed, BEST, {})
    # A job that failed: no model.
    failed = started(jobs)
    write(experiments / failed.job_id / "t1" / "result.json")
    jobs.fail(failed, "all trials failed")
    # A running job and a queued one: never touched.
    running = started(jobs)
    write(experiments / running.job_id / "t1" / "result.json")
    queued_id, _ = jobs.enqueue(SPEC)
    write(experiments / queued_id / "stray.json")
    # Jobs whose records have expired: one a model points into (a Tune trial's
    # checkpoint), one that nothing points at.
    tune_job, orphan = "a" * 32, "b" * 32
    tune_checkpoint = checkpoint(experiments / tune_job / "trial_00000" / "checkpoint_000003")
    write(experiments / tune_job / "trial_00000" / "checkpoint_000001" / CHECKPOINT_FILE)
    write(experiments / tune_job / "experiment_state.json")
    registry.register(model_of(tune_job, tune_checkpoint))
    write(experiments / orphan / "t1" / "result.json")
    # Not a job's folder.
    write(experiments / "notes.txt")

    before = {
        job: files_below(experiments / job)
        for job in (packed.job_id, failed.job_id, tune_job, orphan)
    }
    sizes = sum(p.stat().st_size for p in experiments.rglob("*") if p.is_file())
    swept = sweep_experiments(experiments, jobs, registry, keep_s=0)

    assert set(swept.job_ids) == {packed.job_id, failed.job_id, tune_job, orphan}
    assert files_below(packed_dir) == {f"t1/checkpoint_best/{CHECKPOINT_FILE}"}
    assert files_below(experiments / tune_job) == {
        f"trial_00000/checkpoint_000003/{CHECKPOINT_FILE}"
    }
    assert not (experiments / failed.job_id).exists()
    assert not (experiments / orphan).exists()
    assert files_below(experiments / running.job_id) == {"t1/result.json"}
    assert files_below(experiments / queued_id) == {"stray.json"}
    assert (experiments / "notes.txt").is_file()
    left = sum(p.stat().st_size for p in experiments.rglob("*") if p.is_file())
    assert swept.removed_bytes == sizes - left
    removed_files = sum(len(files) for files in before.values()) - 2
    assert swept.removed_files == removed_files
    # The models still load from where their records point.
    for model_id in (packed.job_id, tune_job):
        assert ModelBundle.load(registry.get(model_id).checkpoint_uri).feature_names == [
            "f0", "f1", "f2", "f3",
        ]  # fmt: skip
    # A second sweep finds nothing more to remove.
    again = sweep_experiments(experiments, jobs, registry, keep_s=0)
    assert again.job_ids == [] and again.removed_bytes == 0


def test_a_deleted_model_lets_its_jobs_folder_go(
    tmp_path: Path, jobs: JobStore, registry: ModelRegistry
) -> None:
    experiments = tmp_path / "experiments"
    lease = started(jobs)
    kept = checkpoint(experiments / lease.job_id / "t1" / "checkpoint_best")
    registry.register(model_of(lease.job_id, kept), lease)
    jobs.succeed(lease, BEST, {})
    sweep_experiments(experiments, jobs, registry, keep_s=0)
    assert kept.is_dir()

    registry.delete(lease.job_id)
    swept = sweep_experiments(experiments, jobs, registry, keep_s=0)
    assert swept.job_ids == [lease.job_id] and swept.removed_files == 1
    assert not (experiments / lease.job_id).exists()


def test_recently_finished_jobs_keep_their_whole_folder(
    tmp_path: Path, jobs: JobStore, registry: ModelRegistry
) -> None:
    experiments = tmp_path / "experiments"
    lease = started(jobs)
    write(experiments / lease.job_id / "t1" / "result.json")
    jobs.fail(lease, "all trials failed")
    fresh_orphan = write(experiments / ("c" * 32) / "t1" / "result.json")

    swept = sweep_experiments(experiments, jobs, registry, keep_s=3600)
    assert swept.job_ids == [] and swept.removed_bytes == 0
    assert (experiments / lease.job_id / "t1" / "result.json").is_file()
    assert fresh_orphan.is_file()
    # An hour on, both go.
    later = sweep_experiments(experiments, jobs, registry, keep_s=3600, now=time.time() + 3601)
    assert set(later.job_ids) == {lease.job_id, "c" * 32}
    assert list(experiments.iterdir()) == []


def test_no_experiments_folder_is_nothing_to_sweep(
    tmp_path: Path, jobs: JobStore, registry: ModelRegistry
) -> None:
    swept = sweep_experiments(tmp_path / "missing", jobs, registry, keep_s=0)
    assert swept.job_ids == [] and swept.removed_files == 0


def test_batch_outputs_go_after_the_retention_and_stale_attempts_at_once(
    tmp_path: Path, jobs: JobStore
) -> None:
    batches = tmp_path / "batches"
    # A succeeded batch job of another tenant: its output's attempt, and the folder of
    # an attempt whose lease ran out.
    done = started(jobs)
    stale = write(batches / "tenants" / "team-a" / done.job_id / "d0#1" / "parts" / "p0.parquet")
    output = write(batches / "tenants" / "team-a" / done.job_id / done.token / "predictions.csv")
    jobs.succeed_batch(done, 10, ["node-a"])
    running = started(jobs)
    write(batches / running.job_id / running.token / "parts" / "p0.parquet")
    expired = write(batches / ("c" * 32) / "d9#1" / "predictions.csv")  # its record is gone

    swept = sweep_batches(batches, jobs, keep_s=3600)
    assert swept.job_ids == [done.job_id]  # only the stale attempt, for now
    assert output.is_file() and not stale.parent.parent.exists()
    assert files_below(batches / running.job_id) == {f"{running.token}/parts/p0.parquet"}
    assert expired.is_file()  # changed less than keep_s ago

    later = time.time() + 3601
    swept = sweep_batches(batches, jobs, keep_s=3600, now=later)
    assert set(swept.job_ids) == {done.job_id, "c" * 32}
    assert not output.exists() and not expired.exists()
    assert (batches / running.job_id).is_dir()
