"""TUNEFLEET_STORAGE=s3://bucket/prefix on a real S3 server (moto's, over HTTP): jobs of
both engines keep their experiments in the bucket and serve from it, uploads live there,
a driver killed mid-job resumes from the bucket, and a wrong endpoint fails the job with
what to set."""

from __future__ import annotations

import io
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import redis
from sklearn.datasets import load_iris

from shared.jobs import JobStore
from shared.vocabulary import JobStatus
from tests.helpers import s3_server as s3_fixtures
from tests.helpers.drivers import LEASE_S, Drivers, ended, submit, wait_until
from tests.helpers.s3_server import CREDENTIALS, S3Server
from tests.helpers.stack import Stack, digits_rows

# The S3 server's fixtures, which the tests below take by name.
s3_server = s3_fixtures.s3_server

SMALL = {"lr": {"grid": [0.01, 0.03]}, "hidden_units": 16, "batch_size": 32, "epochs": 3}


@pytest.fixture(scope="module")
def s3_stack(
    s3_server: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Stack, str]]:
    """`tunefleet up` whose storage is a bucket; yields it with the bucket's name."""
    bucket = s3_server.new_bucket()
    running = Stack(tmp_path_factory.mktemp("s3-stack"))
    running.env.update(
        CREDENTIALS,
        TUNEFLEET_STORAGE=f"s3://{bucket}/runs",
        TUNEFLEET_S3_ENDPOINT_URL=s3_server.url,
    )
    running.start()
    yield running, bucket
    left = running.stop()
    assert not left, f"processes left after Ctrl-C: {left}\n{running.log_tail()}"


@pytest.mark.e2e
@pytest.mark.parametrize("packing", [True, False], ids=["packed", "unpacked"])
def test_a_job_keeps_its_experiment_in_the_bucket_and_serves_from_it(
    s3_stack: tuple[Stack, str],
    s3_server: S3Server,
    packing: bool,
) -> None:
    stack, bucket = s3_stack
    spec = {"dataset": {"builtin": "digits"}, "search_space": SMALL, "packing": packing}
    answer = stack.http.post("/jobs", json=spec)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    job = stack.wait_for(job_id)
    assert job["state"] == "succeeded", (job.get("error"), stack.log_tail())

    predicted = stack.http.post(f"/models/{job_id}/predict", json={"instances": digits_rows(3)})
    assert predicted.status_code == 200, predicted.text
    assert len(predicted.json()["predictions"]) == 3
    model = stack.http.get(f"/models/{job_id}").json()
    prefix = f"runs/experiments/{job_id}/"
    assert model["checkpoint_uri"].startswith(f"s3://{bucket}/{prefix}")
    keys = s3_server.keys(bucket, prefix)
    checkpoint_key = model["checkpoint_uri"].removeprefix(f"s3://{bucket}/") + "/model.pt"
    assert checkpoint_key in keys
    # Both trials' folders, with Tune's files or the packed engine's own.
    assert len({key.split("/")[3] for key in keys if key.endswith("result.json")}) == 2
    if packing:
        # Written once each, whole, never read back (an append reads an object again).
        read = s3_server.requests("GET", f"{job_id}/")
        assert read and not [line for line in read if "result.json" in line]
        client: Any = s3_server.client()
        for key in (key for key in keys if key.endswith("result.json")):
            lines = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            assert len(lines.splitlines()) == SMALL["epochs"]
    # Nothing of it on the local disk.
    assert not (stack.home / "storage" / "experiments").exists()


@pytest.mark.e2e
def test_an_uploaded_dataset_lives_in_the_bucket_and_a_job_trains_on_it(
    s3_stack: tuple[Stack, str],
    s3_server: S3Server,
) -> None:
    stack, bucket = s3_stack
    frame = load_iris(as_frame=True).frame
    csv = io.StringIO()
    frame.to_csv(csv, index=False)
    upload = stack.http.post(
        "/datasets", content=csv.getvalue(), headers={"content-type": "text/csv"}
    )
    assert upload.status_code == 201, upload.text
    dataset_id = upload.json()["id"]
    assert f"runs/datasets/{dataset_id}.csv" in s3_server.keys(bucket, "runs/datasets/")

    spec = {"dataset": {"upload": dataset_id}, "search_space": {**SMALL, "epochs": 5}}
    job_id = stack.http.post("/jobs", json=spec).json()["id"]
    job = stack.wait_for(job_id)
    assert job["state"] == "succeeded", job.get("error")
    row = dict(zip(frame.columns[:4], [5.1, 3.5, 1.4, 0.2], strict=True))
    predicted = stack.http.post(f"/models/{job_id}/predict", json={"instances": [row]})
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == 1


@pytest.mark.e2e
def test_two_stacks_on_one_machine_answer_only_their_own_requests(
    stack: Stack, quick_job: dict[str, Any], s3_stack: tuple[Stack, str]
) -> None:
    # Behind HAProxy, ingress replicas bind their ports with SO_REUSEPORT: two stacks
    # given the same ports shared them without an error, and each stack's proxy sent
    # requests to the other's replicas now and then. Each request on a new connection.
    other, _ = s3_stack
    blocks = [
        re.findall(r"ingress replicas on ports (\d+-\d+)", s.log_tail(10**10))  # the whole log
        for s in (stack, other)
    ]
    assert all(blocks) and blocks[0] != blocks[1], blocks
    job_id = quick_job["id"]
    for path in (f"/jobs/{job_id}", f"/models/{job_id}"):
        own = [httpx.get(stack.url + path, timeout=30).status_code for _ in range(20)]
        others = [httpx.get(other.url + path, timeout=30).status_code for _ in range(20)]
        assert own == [200] * 20, (path, own)
        assert others == [404] * 20, (path, others)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[str]:
    """A local Ray whose workers (they write checkpoints to the bucket) have the
    credentials, as every node of a cluster must."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()


def driver_env(
    local_ray: str, redis_url: str, home: Path, storage: str, endpoint: str
) -> dict[str, str]:
    return {
        **os.environ,
        **CREDENTIALS,
        "RAY_ADDRESS": local_ray,
        "TUNEFLEET_REDIS_URL": redis_url,
        "TUNEFLEET_HOME": str(home),
        "TUNEFLEET_STORAGE": storage,
        "TUNEFLEET_S3_ENDPOINT_URL": endpoint,
        "TUNEFLEET_LEASE_S": str(LEASE_S),
        "TUNEFLEET_DRIVER_POLL_S": "0.2",
    }


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


@pytest.mark.slow
def test_a_killed_driver_resumes_the_job_from_the_bucket(
    local_ray: str,
    redis_server: Any,
    store: JobStore,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    bucket = s3_server.new_bucket()
    env = driver_env(local_ray, redis_server.url, tmp_path, f"s3://{bucket}/runs", s3_server.url)
    drivers = Drivers(env, tmp_path)
    try:
        epochs = 20
        space = {"lr": {"grid": [0.002, 0.004, 0.006, 0.008]}, "hidden_units": 32}
        job_id = submit(
            store,
            {
                "dataset": {"builtin": "digits"},
                "search_space": {**space, "batch_size": 8, "epochs": epochs},
            },
        )
        first = drivers.start()
        wait_until(
            lambda: any(t.iterations >= 3 for t in store.results.trials(job_id)),
            180,
            "three epochs reported",
        )
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert not store.get(job_id).state.is_terminal()
        packs_saved = s3_server.keys(bucket, f"runs/experiments/{job_id}/packs/")
        assert packs_saved, "the pack's state is saved in the bucket after each epoch"

        drivers.start()
        wait_until(ended(store, job_id), 240, "the job ended")
        job = store.get(job_id)
        assert job.state is JobStatus.SUCCEEDED, job.error
        assert job.attempts == 2 and job.trials_done == job.trials_total == 4
        # Resumed from the state in the bucket: no epoch ran twice.
        trials = store.results.trials(job_id)
        assert all(len(store.results.history(job_id, t.trial_id)) == epochs for t in trials)
    finally:
        drivers.stop_all()


@pytest.mark.slow
@pytest.mark.parametrize("wrong", ["endpoint", "bucket"])
def test_a_job_fails_with_what_to_set_when_the_bucket_cannot_be_reached(
    local_ray: str,
    redis_server: Any,
    store: JobStore,
    s3_server: S3Server,
    tmp_path: Path,
    wrong: str,
) -> None:
    bucket, endpoint = s3_server.new_bucket(), s3_server.url
    if wrong == "endpoint":
        endpoint = "http://127.0.0.1:9"  # the discard port: nothing answers there
    else:
        bucket = "no-such-bucket"
    env = driver_env(local_ray, redis_server.url, tmp_path, f"s3://{bucket}/runs", endpoint)
    drivers = Drivers(env, tmp_path)
    try:
        job_id = submit(store, {"dataset": {"builtin": "iris"}, "search_space": {"epochs": 1}})
        drivers.start()
        wait_until(ended(store, job_id), 120, "the job ended")
        job = store.get(job_id)
        assert job.state is JobStatus.FAILED
        assert job.error is not None
        assert f"TUNEFLEET_STORAGE (s3://{bucket}/runs)" in job.error
        for setting in ("TUNEFLEET_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "bucket exists"):
            assert setting in job.error, job.error
    finally:
        drivers.stop_all()
