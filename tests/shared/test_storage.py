"""Storage in a bucket: datasets, imported models, quotas, retention and checkpoints on a
real S3 server (moto's, over HTTP), through the same code that keeps them in a folder."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cluster.redis_server import RedisServer
from services.driver.retention import sweep_experiments
from shared.data import DatasetStore
from shared.errors import NotFoundError, PayloadTooLargeError, StorageUnavailableError
from shared.jobs import JobStore
from shared.model import CHECKPOINT_FILE, ModelBundle
from shared.registry import ModelRegistry
from shared.settings import Settings
from tests.helpers import s3_server as s3_fixtures
from tests.helpers.factories import BEST, model_of, started
from tests.helpers.models import import_model, payload, replica, saved
from tests.helpers.s3_server import S3Server

# The S3 server's fixtures, which the tests below take by name.
s3_server = s3_fixtures.s3_server
s3_env = s3_fixtures.s3_env

CSV = b"a,b,target\n" + b"".join(f"{i},{i % 7},{i % 2}\n".encode() for i in range(40))


@pytest.fixture
def bucket(s3_server: S3Server, s3_env: dict[str, str]) -> Iterator[str]:
    yield s3_server.new_bucket()


@pytest.fixture
def settings(
    s3_server: S3Server,
    bucket: str,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> Settings:
    return Settings(
        home=tmp_path,
        redis_url=redis_server.url,
        storage=f"s3://{bucket}/team",
        s3_endpoint_url=s3_server.url,
    )


def test_an_uploaded_dataset_is_kept_in_the_bucket_and_read_back(
    settings: Settings,
    s3_server: S3Server,
    bucket: str,
) -> None:
    store = DatasetStore(settings.datasets_dir)
    summary = store.save(CSV, quota_bytes=10_000)
    assert sorted(s3_server.keys(bucket)) == [
        f"team/datasets/{summary.id}.csv",
        f"team/datasets/{summary.id}.json",
        f"team/datasets/{summary.id}.parquet",  # what batch jobs read
    ]
    assert [s.id for s in store.summaries()] == [summary.id]
    assert store.load(summary.id).shape == (40, 3)
    assert store.used_bytes() > len(CSV)
    with pytest.raises(PayloadTooLargeError, match="TUNEFLEET_MAX_DATASET_BYTES_PER_TENANT"):
        store.save(CSV.replace(b"target", b"label"), target="label", quota_bytes=len(CSV) + 10)
    store.delete(summary.id)
    assert s3_server.keys(bucket) == []
    with pytest.raises(NotFoundError):
        store.load(summary.id)


def test_imported_models_live_in_the_bucket_count_against_the_quota_and_predict(
    settings: Settings,
    s3_server: S3Server,
    bucket: str,
) -> None:
    quota = len(saved(payload())) + 100
    models = replica(settings.model_copy(update={"max_model_bytes_per_tenant": quota}))
    # The predictor loads the checkpoint from the bucket, as its deployment does.
    record = import_model(models).json()
    assert record["checkpoint_uri"] == f"s3://{bucket}/team/models/{record['id']}"
    bundle = ModelBundle.load(settings.storage_at(record["checkpoint_uri"]))
    assert bundle.feature_names == ["f0", "f1", "f2", "f3"]
    assert s3_server.keys(bucket) == [f"team/models/{record['id']}/{CHECKPOINT_FILE}"]
    assert import_model(models).status_code == 413
    assert models.delete(f"/{record['id']}").status_code == 204
    assert s3_server.keys(bucket) == []


def test_retention_trims_a_finished_jobs_folder_in_the_bucket_to_its_models_checkpoint(
    settings: Settings,
    redis_client: redis.Redis,
    s3_server: S3Server,
    bucket: str,
) -> None:
    jobs, registry = JobStore(redis_client), ModelRegistry(redis_client)
    lease = started(jobs)
    folder = settings.experiments_dir / lease.job_id
    kept = folder / "t1" / "checkpoint_best"
    (kept / CHECKPOINT_FILE).write_bytes(saved(payload()))
    (folder / "t1" / "result.json").write_text("{}\n")
    (folder / "t2" / "checkpoint_best" / CHECKPOINT_FILE).write_bytes(saved(payload()))
    (folder / "packs" / "0000.pt").write_bytes(b"x" * 100)
    registry.register(model_of(lease.job_id, kept), lease)  # type: ignore[arg-type]
    jobs.succeed(lease, BEST, {})
    # Still within its retention: untouched.
    assert sweep_experiments(settings.experiments_dir, jobs, registry, keep_s=3600).job_ids == []

    swept = sweep_experiments(
        settings.experiments_dir, jobs, registry, keep_s=3600, now=time.time() + 3601
    )
    assert swept.job_ids == [lease.job_id] and swept.removed_files == 3
    prefix = f"team/experiments/{lease.job_id}/"
    assert s3_server.keys(bucket) == [f"{prefix}t1/checkpoint_best/{CHECKPOINT_FILE}"]
    assert ModelBundle.load(settings.storage_at(kept.uri)).classes == [0, 1, 2]


def test_a_wrong_endpoint_says_what_to_set(settings: Settings, tmp_path: Path) -> None:
    nowhere = settings.model_copy(update={"s3_endpoint_url": "http://127.0.0.1:9"})
    with pytest.raises(StorageUnavailableError) as raised:
        DatasetStore(nowhere.datasets_dir).save(CSV)
    message = str(raised.value)
    assert "TUNEFLEET_S3_ENDPOINT_URL" in message and "AWS_ACCESS_KEY_ID" in message
    assert settings.storage is not None and settings.storage in message


def test_a_missing_bucket_is_named(settings: Settings, s3_server: S3Server) -> None:
    missing = settings.model_copy(update={"storage": "s3://no-such-bucket-here/x"})
    with pytest.raises(StorageUnavailableError, match=r"no-such-bucket-here.*bucket exists"):
        DatasetStore(missing.datasets_dir).save(CSV)
