import threading
import time
from pathlib import Path

import pytest
import redis

from cluster.redis_server import RedisServer
from shared import queue_scripts, redis_keys
from shared.errors import ConflictError, LeaseLostError, NotFoundError, QueueFullError
from shared.job_views import BestTrial
from shared.jobs import JobStore
from shared.lease import Lease
from shared.registry import ModelRecord, ModelRegistry
from shared.results import TrialRow
from shared.settings import QueuePolicy
from shared.spec import JobSpec
from shared.vocabulary import JobStatus
from tests.helpers.factories import spec


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def enqueue(store: JobStore, job: JobSpec) -> str:
    job_id, created = store.enqueue(job)
    assert created
    return job_id


def claim(store: JobStore, driver_id: str, timeout_s: float = 0.0) -> Lease:
    lease = store.claim(driver_id, timeout_s)
    assert lease is not None
    return lease


def claimed_id(store: JobStore, driver_id: str, timeout_s: float = 0.0) -> str | None:
    lease = store.claim(driver_id, timeout_s)
    return None if lease is None else lease.job_id


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
    claimed = [claimed_id(store, "d1") for _ in ids]
    assert claimed == ids
    assert store.get(ids[0]).state is JobStatus.RUNNING
    assert store.get(ids[0]).attempts == 1


def test_a_claimed_job_is_not_handed_out_again(store: JobStore) -> None:
    job_id = enqueue(store, spec())
    assert claimed_id(store, "d1", timeout_s=0.1) == job_id
    assert store.claim("d2", timeout_s=0.1) is None
    assert store.queue_depth() == 0 and store.running_count() == 1


def test_concurrent_drivers_never_share_a_job(redis_server, store: JobStore) -> None:
    ids = {enqueue(store, spec(f"job{i}")) for i in range(40)}
    claimed: list[list[str]] = [[], [], [], []]

    def drain(bucket: list[str]) -> None:
        own = JobStore.from_url(redis_server.url)
        while (lease := own.claim(f"driver-{id(bucket)}")) is not None:
            bucket.append(lease.job_id)

    threads = [threading.Thread(target=drain, args=(bucket,)) for bucket in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [job_id for bucket in claimed for job_id in bucket]
    assert sorted(everything) == sorted(ids)  # each job once, none lost


def test_succeed_and_fail_acknowledge_the_job(store: JobStore) -> None:
    good, bad = enqueue(store, spec()), enqueue(store, spec())
    first, second = claim(store, "d1"), claim(store, "d1")
    assert (first.job_id, second.job_id) == (good, bad)
    best = BestTrial(trial_id="t1", metric="val_accuracy", value=0.9, config={"lr": 0.1})
    store.succeed(first, best, {"test_accuracy": 0.88})
    store.fail(second, "target column 'x' is not in the dataset")
    assert store.running_count() == 0
    done = store.get(good)
    assert done.state is JobStatus.SUCCEEDED and done.state.is_terminal()
    assert done.best == best and done.test_metrics == {"test_accuracy": 0.88}
    failed = store.get(bad)
    assert failed.state is JobStatus.FAILED
    assert failed.error == "target column 'x' is not in the dataset"


def test_progress_and_trials_are_readable(store: JobStore) -> None:
    job_id = enqueue(store, spec())
    lease = claim(store, "d1")
    row = TrialRow(trial_id="a_00001", state="RUNNING", config={"lr": 0.1}, iterations=2)
    store.record_trial(lease, row, {"training_iteration": 2, "val_accuracy": 0.5})
    store.record_trial(lease, TrialRow(trial_id="a_00000", state="TERMINATED", config={}), None)
    best = BestTrial(trial_id="a_00001", metric="val_accuracy", value=0.5, config={"lr": 0.1})
    store.record_progress(lease, 1, 1, best)
    assert store.results.history(job_id, "a_00001") == [
        {"training_iteration": 2, "val_accuracy": 0.5}
    ]
    assert [t.trial_id for t in store.results.trials(job_id)] == ["a_00000", "a_00001"]
    job = store.get(job_id)
    assert job.trials_done == 1 and job.trials_running == 1 and job.best == best


def test_unknown_job_is_not_found(store: JobStore) -> None:
    with pytest.raises(NotFoundError, match="no job with id"):
        store.get("0" * 32)


def policy_store(redis_client: redis.Redis, **policy: float) -> JobStore:
    return JobStore(redis_client, QueuePolicy.default(**policy))


def test_high_priority_jumps_the_queue_and_each_priority_is_fifo(store: JobStore) -> None:
    normal = [enqueue(store, spec(f"n{i}")) for i in range(3)]
    low = enqueue(store, JobSpec.model_validate({**spec("low").model_dump(), "priority": "low"}))
    high = enqueue(store, JobSpec.model_validate({**spec("high").model_dump(), "priority": "high"}))
    assert store.queue_depths() == {"high": 1, "normal": 3, "low": 1}
    assert [claimed_id(store, "d1") for _ in range(5)] == [high, *normal, low]


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
    assert claimed_id(store, "dead-driver") == first
    time.sleep(0.5)
    assert store.reap() == [first]
    job = store.get(first)
    assert job.state is JobStatus.QUEUED and store.running_count() == 0
    # Back at the head of its queue, ahead of the job that was waiting.
    assert claimed_id(store, "live-driver") == first
    assert store.get(first).attempts == 2 and store.get(first).driver == "live-driver"
    assert claimed_id(store, "live-driver") == second


def test_renewed_lease_is_kept_and_a_lost_one_cannot_be_renewed(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, lease_s=0.4)
    job_id = enqueue(store, spec())
    lease = claim(store, "d1")
    for _ in range(4):
        time.sleep(0.2)
        assert store.renew(lease)
        assert store.reap() == []
    assert not store.renew(Lease(job_id, "someone-else#1"))
    assert not lease.lost.is_set()
    time.sleep(0.5)
    store.reap()
    assert not store.renew(lease) and lease.lost.is_set()


def test_job_fails_after_max_attempts(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, lease_s=0.2, max_attempts=2)
    job_id = enqueue(store, spec())
    for _ in range(2):
        assert claimed_id(store, "crashy") == job_id
        time.sleep(0.3)
        store.reap()
    job = store.get(job_id)
    assert job.state is JobStatus.FAILED and job.attempts == 2
    assert job.error is not None and "stopped (crashed, killed or lost)" in job.error
    assert store.claim("crashy") is None


def test_cancel_queued_running_and_finished_jobs(store: JobStore) -> None:
    queued, running = enqueue(store, spec("q")), enqueue(store, spec("r"))
    queued_lease, running_lease = claim(store, "d1"), claim(store, "d1")
    assert (queued_lease.job_id, running_lease.job_id) == (queued, running)
    later = enqueue(store, spec("later"))
    assert store.cancel(later).state is JobStatus.CANCELLED
    assert store.claim("d1") is None  # a cancelled job is never handed out
    assert store.cancel(running).state is JobStatus.CANCELLING
    store.mark_cancelled(running_lease)
    assert store.get(running).state is JobStatus.CANCELLED and store.running_count() == 1
    store.fail(queued_lease, "boom")
    with pytest.raises(ConflictError, match="already ended"):
        store.cancel(queued)
    with pytest.raises(NotFoundError):
        store.cancel("f" * 32)


def test_finished_jobs_expire_after_retention_but_models_stay(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, retention_s=1)
    job_id = enqueue(store, spec())
    lease = claim(store, "d1")
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
    store.succeed(lease, best, {"test_accuracy": 0.9})
    time.sleep(1.5)
    with pytest.raises(NotFoundError):
        store.get(job_id)
    assert store.recent() == []
    assert registry.get(job_id).job_id == job_id


def test_heartbeats_say_which_drivers_live(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, lease_s=0.3)
    store.drivers.heartbeat("d1")
    store.drivers.heartbeat("d2")
    assert sorted(store.drivers.live()) == ["d1", "d2"]
    time.sleep(0.2)
    store.drivers.heartbeat("d2")
    time.sleep(0.2)
    assert store.drivers.live() == ["d2"]


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
        claimed = {claimed_id(store, "d1") for _ in range(50)}
        assert claimed == accepted and store.claim("d1") is None
    finally:
        server.stop()


def model_of(job_id: str) -> ModelRecord:
    return ModelRecord(
        id=job_id, job_id=job_id, checkpoint_uri="/nowhere", task="classification",
        target="target", config={}, metric="val_accuracy", mode="max",
        validation_value=0.9, test_metrics={"test_accuracy": 0.9}, feature_names=["a"],
        classes=[0, 1], created_at=time.time(),
    )  # fmt: skip


def test_a_driver_whose_lease_ran_out_cannot_write_for_the_job(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, lease_s=0.2)
    registry = ModelRegistry(redis_client)
    job_id = enqueue(store, spec())
    stale = claim(store, "paused")
    time.sleep(0.3)  # paused past its lease: another driver takes the job
    assert store.reap() == [job_id]
    owner = claim(store, "live")
    assert owner.token != stale.token and store.get(job_id).attempts == 2
    best = BestTrial(trial_id="t", metric="val_accuracy", value=0.9, config={})
    row = TrialRow(trial_id="t", state="RUNNING", config={"lr": 9.9})
    refused = [
        lambda: store.record_progress(stale, 5, 0, best),
        lambda: store.record_trial(stale, row, {"training_iteration": 1}),
        lambda: store.record_engine(stale, "stale"),
        lambda: registry.register(model_of(job_id), stale),
        lambda: registry.promote_if_better("prod", model_of(job_id), stale),
        lambda: store.succeed(stale, best, {"test_accuracy": 0.1}),
        lambda: store.fail(stale, "stale"),
    ]
    for write in refused:
        with pytest.raises(LeaseLostError, match="has ended"):
            write()
    assert stale.lost.is_set()
    job = store.get(job_id)
    assert job.state is JobStatus.RUNNING and job.trials_done == 0 and job.engine is None
    assert store.results.trials(job_id) == [] and registry.find(job_id) is None
    assert registry.aliases() == {} and store.running_count() == 1  # the owner's lease stays
    # The owner's writes go through.
    store.record_trial(owner, row, {"training_iteration": 1})
    registry.register(model_of(job_id), owner)
    assert registry.promote_if_better("prod", model_of(job_id), owner)
    store.succeed(owner, best, {"test_accuracy": 0.9})
    assert store.get(job_id).state is JobStatus.SUCCEEDED and store.running_count() == 0
    with pytest.raises(LeaseLostError):  # ended: even its owner's claim is over
        store.fail(owner, "late")


def test_leases_run_on_redis_clock_not_the_drivers(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = policy_store(redis_client, lease_s=5)
    job_id = enqueue(store, spec())
    lease = claim(store, "d1")
    # A driver on a host whose clock runs an hour ahead reaps, then one an hour behind
    # renews: the live job stays with its driver, and its lease is extended.
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    assert store.reap() == []
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)
    assert store.renew(lease)
    monkeypatch.undo()
    deadline_ms = redis_client.zscore("tunefleet:processing", job_id)
    assert deadline_ms is not None and abs(deadline_ms / 1000 - (real_time() + 5)) < 2
    assert store.get(job_id).state is JobStatus.RUNNING


def test_a_stopping_driver_hands_its_job_back_without_spending_an_attempt(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, max_attempts=2)
    job_id, waiting = enqueue(store, spec("long")), enqueue(store, spec("waiting"))
    for restart in range(3):  # more restarts than attempts
        lease = claim(store, f"driver-{restart}")
        assert lease.job_id == job_id  # back at the head of its queue each time
        assert store.release(lease) == "queued"
        job = store.get(job_id)
        assert job.state is JobStatus.QUEUED and job.attempts == 0
    lease = claim(store, "last")
    assert store.release(Lease(job_id, lease.token)) == "queued"
    assert store.release(lease) == "lost" and lease.lost.is_set()  # released once only
    # A job being cancelled ends cancelled when its driver stops.
    lease = claim(store, "last")
    store.cancel(job_id)
    assert store.release(lease) == "cancelled"
    assert store.get(job_id).state is JobStatus.CANCELLED
    assert claimed_id(store, "next") == waiting


def test_tenants_take_turns_within_a_priority(store: JobStore) -> None:
    # One tenant queues many jobs first; another's job does not wait behind them all.
    crowd = [store.enqueue(spec(f"a{i}"), tenant="alpha")[0] for i in range(4)]
    late = store.enqueue(spec("b"), tenant="beta")[0]
    later = store.enqueue(spec("c"), tenant="gamma")[0]
    order = [claimed_id(store, "d1") for _ in range(6)]
    assert order == [crowd[0], late, later, crowd[1], crowd[2], crowd[3]]
    assert store.queue_depth() == 0


def test_priority_still_comes_first_and_tenants_share_each_priority(store: JobStore) -> None:
    def submit(name: str, tenant: str, priority: str) -> str:
        job = JobSpec.model_validate({**spec(name).model_dump(), "priority": priority})
        return store.enqueue(job, tenant=tenant)[0]

    alpha_low = submit("al", "alpha", "low")
    alpha_high = [submit(f"ah{i}", "alpha", "high") for i in range(2)]
    beta_high = submit("bh", "beta", "high")
    beta_normal = submit("bn", "beta", "normal")
    assert store.queue_depths() == {"high": 3, "normal": 1, "low": 1}
    order = [claimed_id(store, "d1") for _ in range(5)]
    assert order == [alpha_high[0], beta_high, alpha_high[1], beta_normal, alpha_low]


def test_a_tenant_at_its_running_limit_waits_while_others_run(
    redis_client: redis.Redis,
) -> None:
    store = policy_store(redis_client, max_running_per_tenant=1)
    first, second = (store.enqueue(spec(f"a{i}"), tenant="alpha")[0] for i in range(2))
    beta = store.enqueue(spec("b"), tenant="beta")[0]
    running = claim(store, "d1")
    assert running.job_id == first
    assert claimed_id(store, "d2") == beta  # alpha already runs one
    assert store.claim("d3") is None  # alpha's second waits for its first
    store.succeed(running, BestTrial(trial_id="t", metric="m", value=1, config={}), {})
    assert claimed_id(store, "d3") == second


def test_waiting_jobs_move_up_a_priority(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, aging_s=0.5)
    low = store.enqueue(JobSpec.model_validate({**spec("low").model_dump(), "priority": "low"}))[0]
    time.sleep(0.6)
    normal = enqueue(store, spec("fresh"))
    # The low job waited past aging_s: it now counts as normal, ahead of the fresh one.
    assert claimed_id(store, "d1") == low
    assert store.get(low).priority == "normal"
    assert claimed_id(store, "d1") == normal


def test_jobs_queued_before_per_tenant_lines_are_still_claimed_in_order(
    store: JobStore, redis_client: redis.Redis
) -> None:
    # Records and one list per priority, as an earlier version left them in Redis.
    ids = [enqueue(store, spec(f"old{i}")) for i in range(3)]
    line = "tunefleet:queue:normal:default"
    assert redis_client.lrange(line, 0, -1) == ids[::-1]
    redis_client.delete(line, "tunefleet:queue_tenants:normal")
    redis_client.lpush("tunefleet:queue:normal", *ids)
    assert store.queue_depths()["normal"] == 3
    assert [claimed_id(store, "d1") for _ in range(3)] == ids
    assert redis_client.exists("tunefleet:queue:normal") == 0


def test_a_tenant_that_submits_as_its_last_job_is_claimed_only_takes_its_turn(
    store: JobStore,
) -> None:
    # Alpha has a backlog. Beta submits its next job only once its last one has been
    # claimed, so that its line is empty at every submit: coming back must not put beta
    # ahead of alpha each time.
    names = {store.enqueue(spec("a"), tenant="alpha")[0]: f"a{i}" for i in range(5)}
    order: list[str] = []
    beta_waiting = False
    for _ in range(4):
        if not beta_waiting:
            names[store.enqueue(spec("b"), tenant="beta")[0]] = f"b{len(names) - 5}"
        claimed = names[str(claimed_id(store, "d1"))]
        beta_waiting = claimed.startswith("a")
        order.append(claimed)
    assert order == ["a0", "b0", "a1", "b1"]


def test_a_job_handed_back_waits_afresh_before_it_moves_up(redis_client: redis.Redis) -> None:
    store = policy_store(redis_client, aging_s=0.5)
    low = store.enqueue(JobSpec.model_validate({**spec("low").model_dump(), "priority": "low"}))[0]
    lease = claim(store, "d1")
    time.sleep(0.7)  # it ran longer than aging_s, then its driver stopped
    assert store.release(lease) == "queued"
    normal = enqueue(store, spec("fresh"))
    # Queued again just now: still low, behind the normal job.
    assert claimed_id(store, "d2") == normal
    assert store.get(low).priority == "low"
    assert claimed_id(store, "d2") == low


def test_the_script_that_ends_a_job_sets_every_ttl_itself(redis_client: redis.Redis) -> None:
    # Run as JobStore runs it, alone: if its reply is lost, nothing after it happens.
    store = policy_store(redis_client, retention_s=60)
    job_id = enqueue(store, spec())
    lease = claim(store, "d1")
    row = TrialRow(trial_id="a_00000", state="RUNNING", config={"lr": 0.1}, iterations=1)
    store.record_trial(lease, row, {"training_iteration": 1, "val_accuracy": 0.5})
    finish = redis_client.register_script(queue_scripts.FINISH)
    keys = [redis_keys.job(job_id), redis_keys.PROCESSING]
    assert finish(keys=keys, args=[lease.token, job_id, "succeeded", 60]) == 1
    for key in (
        redis_keys.job(job_id),
        redis_keys.job_trials(job_id),
        redis_keys.trial_history(job_id, "a_00000"),
        redis_keys.job_events(job_id),
    ):
        assert 0 < redis_client.ttl(key) <= 60, key
