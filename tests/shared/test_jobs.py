import threading
import time
from pathlib import Path

import pytest
import redis

from cluster.redis_server import RedisServer
from shared.errors import ConflictError, NotFoundError, QueueFullError
from shared.jobs import BestTrial, JobStore, QueuePolicy
from shared.registry import ModelRecord, ModelRegistry
from shared.results import TrialRow
from shared.spec import JobSpec
from shared.status import JobStatus


def spec(name: str = "job") -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": name,
            "dataset": {"builtin": "iris"},
            "search_space": {"lr": {"grid": [0.1, 0.01]}},
        }
    )


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def enqueue(store: JobStore, job: JobSpec) -> str:
    job_id, created = store.enqueue(job)
    assert created
    return job_id


def test_enqueued_job_is_recorded_and_queued(store: JobStore) -> None:
    job_id = enqueue(store, spec("first"))
    job = store.get(job_id)
    assert job.state is JobStatus.QUEUED
    assert job.name == "first"
    assert job.trials_total == 2 and job.trials_done == 0
    assert store.queue_depth() == 1
    assert [j.id for j in store.recent()] == [job_id]


def test_claims_are_first_in_first_out(store: JobStore) -> None:
    ids = [enqueue(store, spec(f"job{i}")) for i in range(3)]
    claimed = [store.claim("d1") for _ in ids]
    assert claimed == ids
    assert store.get(ids[0]).state is JobStatus.RUNNING
    assert store.get(ids[0]).attempts == 1


def test_a_claimed_job_is_not_handed_out_again(store: JobStore) -> None:
    job_id = enqueue(store, spec())
    assert store.claim("d1", timeout_s=0.1) == job_id
    assert store.claim("d2", timeout_s=0.1) is None
    assert store.queue_depth() == 0 and store.running_count() == 1


def test_concurrent_drivers_never_share_a_job(redis_server, store: JobStore) -> None:
    ids = {enqueue(store, spec(f"job{i}")) for i in range(40)}
    claimed: list[list[str]] = [[], [], [], []]

    def drain(bucket: list[str]) -> None:
        own = JobStore.from_url(redis_server.url)
        while (job_id := own.claim(f"driver-{id(bucket)}")) is not None:
            bucket.append(job_id)

    threads = [threading.Thread(target=drain, args=(bucket,)) for bucket in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for bucket in claimed for job_id in bucket]
    assert sorted(everything) == sorted(ids)  # each job once, none lost


def test_succeed_and_fail_acknowledge_the_job(store: JobStore) -> None:
    good, bad = enqueue(store, spec()), enqueue(store, spec())
    store.claim("d1")
    store.claim("d1")
    best = BestTrial(trial_id="t1", metric="val_accuracy", value=0.9, config={"lr": 0.1})
    store.succeed(good, best, {"test_accuracy": 0.88})
    store.fail(bad, "target column 'x' is not in the dataset")
    assert store.running_count() == 0
    done = store.get(good)
    assert done.state is JobStatus.SUCCEEDED and done.state.is_terminal()
    assert done.best == best and done.test_metrics == {"test_accuracy": 0.88}
    failed = store.get(bad)
    assert failed.state is JobStatus.FAILED
    assert failed.error == "target column 'x' is not in the dataset"


def test_progress_and_trials_are_readable(store: JobStore) -> None:
    job_id = enqueue(store, spec())
    row = TrialRow(trial_id="a_00001", state="RUNNING", config={"lr": 0.1}, iterations=2)
    store.results.record_trial(job_id, row)
    store.results.record_trial(job_id, TrialRow(trial_id="a_00000", state="TERMINATED", config={}))
    best = BestTrial(trial_id="a_00001", metric="val_accuracy", value=0.5, config={"lr": 0.1})
    store.record_progress(job_id, 1, 1, best)
    assert [t.trial_id for t in store.results.trials(job_id)] == ["a_00000", "a_00001"]
    job = store.get(job_id)
    assert job.trials_done == 1 and job.trials_running == 1 and job.best == best


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFoundError, match="no job with id"):
        store.get("0" * 32)


def policy_store(redis_client: redis.Redis, **policy: float) -> JobStore:
    return JobStore(redis_client, QueuePolicy(**policy))


def test_high_priority_jumps_the_queue_and_each_priority_is_fifo(store: JobStore) -> None:
    normal = [enqueue(store, spec(f"n{i}")) for i in range(3)]
    low = enqueue(store, JobSpec.model_validate({**spec("low").model_dump(), "priority": "low"}))
    high = enqueue(store, JobSpec.model_validate({**spec("high").model_dump(), "priority": "high"}))
    assert store.queue_depths() == {"high": 1, "normal": 3, "low": 1}
    assert [store.claim("d1") for _ in range(5)] == [high, *normal, low]


def test_idempotency_key_returns_the_first_job(store: JobStore) -> None:
    first, created = store.enqueue(spec(), idempotency_key="retry-me")
    again, created_again = store.enqueue(spec("other"), idempotency_key="retry-me")
    assert created and not created_again and again == first
    assert len(store.recent()) == 1 and store.queue_depth() == 1


def test_full_queue_refuses_and_writes_nothing(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, max_queued=3)
    for i in range(3):
        enqueue(store, spec(f"j{i}"))
    keys_before = set(redis_client.keys("*"))
    with pytest.raises(QueueFullError, match="holds 3 jobs"):
        store.enqueue(spec("one too many"))
    assert set(redis_client.keys("*")) == keys_before
    store.claim("d1")  # a claimed job no longer counts against the queue
    enqueue(store, spec("fits again"))


def test_expired_lease_is_reclaimed_by_another_driver(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, lease_s=0.3)
    first, second = enqueue(store, spec("a")), enqueue(store, spec("b"))
    assert store.claim("dead-driver") == first
    time.sleep(0.5)
    assert store.reap() == [first]
    job = store.get(first)
    assert job.state is JobStatus.QUEUED and store.running_count() == 0
    # Back at the head of its queue, ahead of the job that was waiting.
    assert store.claim("live-driver") == first
    assert store.get(first).attempts == 2 and store.get(first).driver == "live-driver"
    assert store.claim("live-driver") == second


def test_renewed_lease_is_kept_and_a_lost_one_cannot_be_renewed(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, lease_s=0.4)
    job_id = enqueue(store, spec())
    store.claim("d1")
    for _ in range(4):
        time.sleep(0.2)
        assert store.renew(job_id, "d1")
        assert store.reap() == []
    assert not store.renew(job_id, "someone-else")
    time.sleep(0.5)
    store.reap()
    assert not store.renew(job_id, "d1")


def test_job_fails_after_max_attempts(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, lease_s=0.2, max_attempts=2)
    job_id = enqueue(store, spec())
    for _ in range(2):
        assert store.claim("crashy") == job_id
        time.sleep(0.3)
        store.reap()
    job = store.get(job_id)
    assert job.state is JobStatus.FAILED and job.attempts == 2
    assert job.error is not None and "stopped (crashed, killed or lost)" in job.error
    assert store.claim("crashy") is None


def test_cancel_queued_running_and_finished_jobs(store: JobStore) -> None:
    queued, running = enqueue(store, spec("q")), enqueue(store, spec("r"))
    assert store.claim("d1") == queued
    assert store.claim("d1") == running
    later = enqueue(store, spec("later"))
    assert store.cancel(later).state is JobStatus.CANCELLED
    assert store.claim("d1") is None  # a cancelled job is never handed out
    assert store.cancel(running).state is JobStatus.CANCELLING
    store.mark_cancelled(running)
    assert store.get(running).state is JobStatus.CANCELLED and store.running_count() == 1
    store.fail(queued, "boom")
    with pytest.raises(ConflictError, match="already ended"):
        store.cancel(queued)
    with pytest.raises(NotFoundError):
        store.cancel("f" * 32)


def test_finished_jobs_expire_after_retention_but_models_stay(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, retention_s=1)
    job_id = enqueue(store, spec())
    store.claim("d1")
    best = BestTrial(trial_id="t", metric="val_accuracy", value=0.9, config={})
    registry = ModelRegistry(redis_client)
    registry.register(
        ModelRecord(
            id=job_id, job_id=job_id, checkpoint_uri="/nowhere", task="classification",
            target="target", config={}, metric="val_accuracy", mode="max",
            validation_value=0.9, test_metrics={}, feature_names=["a"], classes=[0, 1],
            created_at=time.time(),
        )
    )  # fmt: skip
    store.succeed(job_id, best, {"test_accuracy": 0.9})
    time.sleep(1.5)
    with pytest.raises(NotFoundError):
        store.get(job_id)
    assert store.recent() == []
    assert registry.get(job_id).job_id == job_id


def test_heartbeats_say_which_drivers_live(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, lease_s=0.3)
    store.heartbeat("d1")
    store.heartbeat("d2")
    assert sorted(store.live_drivers()) == ["d1", "d2"]
    time.sleep(0.2)
    store.heartbeat("d2")
    time.sleep(0.2)
    assert store.live_drivers() == ["d2"]


def test_accepted_jobs_survive_kill_9_of_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    try:
        store = JobStore.from_url(server.url)
        accepted = {enqueue(store, spec(f"j{i}")) for i in range(50)}
        server.kill()  # SIGKILL: no shutdown, no final fsync
        server.start()
        store = JobStore.from_url(server.url)
        assert {job.id for job in store.recent(limit=100)} == accepted
        assert all(job.state is JobStatus.QUEUED for job in store.recent(limit=100))
        claimed = {store.claim("d1") for _ in range(50)}
        assert claimed == accepted and store.claim("d1") is None
    finally:
        server.stop()
