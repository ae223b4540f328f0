import threading

import pytest
import redis

from shared.errors import NotFoundError
from shared.jobs import BestTrial, JobStore, TrialRow
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


def test_enqueued_job_is_recorded_and_queued(store: JobStore) -> None:
    job_id = store.enqueue(spec("first"))
    job = store.get(job_id)
    assert job.state is JobStatus.QUEUED
    assert job.name == "first"
    assert job.trials_total == 2 and job.trials_done == 0
    assert store.queue_depth() == 1
    assert [j.id for j in store.recent()] == [job_id]


def test_claims_are_first_in_first_out(store: JobStore) -> None:
    ids = [store.enqueue(spec(f"job{i}")) for i in range(3)]
    claimed = [store.claim(timeout_s=0.1) for _ in ids]
    assert claimed == ids
    assert store.get(ids[0]).state is JobStatus.RUNNING
    assert store.get(ids[0]).attempts == 1


def test_a_claimed_job_is_not_handed_out_again(store: JobStore) -> None:
    job_id = store.enqueue(spec())
    assert store.claim(timeout_s=0.1) == job_id
    assert store.claim(timeout_s=0.1) is None
    assert store.queue_depth() == 0 and store.running_count() == 1


def test_concurrent_drivers_never_share_a_job(redis_server, store: JobStore) -> None:
    ids = {store.enqueue(spec(f"job{i}")) for i in range(40)}
    claimed: list[list[str]] = [[], [], [], []]

    def drain(bucket: list[str]) -> None:
        own = JobStore.from_url(redis_server.url)
        while (job_id := own.claim(timeout_s=0.2)) is not None:
            bucket.append(job_id)

    threads = [threading.Thread(target=drain, args=(bucket,)) for bucket in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for bucket in claimed for job_id in bucket]
    assert sorted(everything) == sorted(ids)  # each job once, none lost


def test_succeed_and_fail_acknowledge_the_job(store: JobStore) -> None:
    good, bad = store.enqueue(spec()), store.enqueue(spec())
    store.claim(timeout_s=0.1)
    store.claim(timeout_s=0.1)
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
    job_id = store.enqueue(spec())
    row = TrialRow(trial_id="a_00001", state="RUNNING", config={"lr": 0.1}, iterations=2)
    store.record_trial(job_id, row)
    store.record_trial(job_id, TrialRow(trial_id="a_00000", state="TERMINATED", config={}))
    best = BestTrial(trial_id="a_00001", metric="val_accuracy", value=0.5, config={"lr": 0.1})
    store.record_progress(job_id, 1, best)
    assert [t.trial_id for t in store.trials(job_id)] == ["a_00000", "a_00001"]
    job = store.get(job_id)
    assert job.trials_done == 1 and job.best == best


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFoundError, match="no job with id"):
        store.get("0" * 32)
