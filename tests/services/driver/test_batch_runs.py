"""Batch jobs in process, on a local Ray and a real redis-server: the output of a table
scored in many pieces, in either format; a row that cannot be read; and jobs run twice:
an attempt whose lease ran out while its scorers wrote neither doubles the output's rows
nor removes the output of the attempt that holds the job."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import ray
import redis

from cluster.redis_server import RedisServer
from services.driver.batch import BatchFailedError, run_batch
from services.driver.context import JobContext
from services.predictor.batches import batch_spec
from shared.batch import BatchRequest, BatchSpec, attempt_folder, output_file
from shared.data import DatasetStore
from shared.jobs import JobStore
from shared.lease import Lease
from shared.model import ModelBundle
from shared.registry import ModelRecord, ModelRegistry
from shared.settings import Settings
from shared.vocabulary import DEFAULT_TENANT, JobStatus
from tests.helpers.models import payload, saved

pytestmark = pytest.mark.ray

ROWS = 20_000
LEASE_S = 1.0
# Rows per row group of the uploads' Parquet copies here: a table of ROWS rows is then
# scored in 5 pieces, one task each.
ROW_GROUP_ROWS = 4096


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Room for both attempts at once: a scorer and a reading task each.
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    yield
    ray.shutdown()


class Batch(NamedTuple):
    settings: Settings
    jobs: JobStore
    registry: ModelRegistry
    spec: BatchSpec
    first: Lease  # the job's first claim, by "driver-1"


@pytest.fixture
def table() -> pd.DataFrame:
    """ROWS rows of the model's features, and a column of their numbers."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(ROWS, 4)), columns=["f0", "f1", "f2", "f3"])
    frame.insert(0, "row", range(ROWS))
    return frame


@pytest.fixture(params=["csv"])
def batch(
    request: pytest.FixtureRequest,
    local_ray: None,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
    table: pd.DataFrame,
    monkeypatch: pytest.MonkeyPatch,
) -> Batch:
    """A batch job scoring ``table`` with a registered model, claimed once; its output
    in the format of the fixture's parameter."""
    monkeypatch.setattr("shared.data.PARQUET_ROW_GROUP_ROWS", ROW_GROUP_ROWS)
    settings = Settings(
        redis_url=redis_server.url, home=tmp_path, lease_s=LEASE_S, batch_max_workers=1
    )
    jobs = JobStore(redis_client, settings.queue_policy())
    registry = ModelRegistry(redis_client)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.pt").write_bytes(saved(payload()))
    record = ModelRecord(
        id="a" * 32, job_id="a" * 32, checkpoint_uri=str(folder), config={},
        metric="val_accuracy", mode="max", validation_value=0.5, test_metrics={},
        feature_names=["f0", "f1", "f2", "f3"], classes=[0, 1, 2], created_at=time.time(),
    )  # fmt: skip
    registry.register(record)
    datasets = DatasetStore(settings.datasets_of(DEFAULT_TENANT))
    upload = datasets.save(table.to_csv(index=False).encode(), purpose="scoring")
    batch_request = BatchRequest.model_validate({"dataset": upload.id, "format": request.param})
    spec = batch_spec(batch_request, record, settings, DEFAULT_TENANT)
    jobs.enqueue(spec, None, DEFAULT_TENANT)
    first = jobs.claim("driver-1")
    assert first is not None
    return Batch(settings, jobs, registry, spec, first)


def read_output(settings: Settings, job_id: str, output_format: str, attempt: str) -> pd.DataFrame:
    content = io.BytesIO(
        output_file(settings.batches_dir, job_id, output_format, attempt).read_bytes()
    )
    return pd.read_csv(content) if output_format == "csv" else pd.read_parquet(content)


@pytest.mark.parametrize("batch", ["csv", "parquet"], indirect=True)
def test_a_table_scored_in_pieces_comes_out_whole_and_in_order(
    batch: Batch, table: pd.DataFrame
) -> None:
    settings, jobs, registry, spec, lease = batch
    run_batch(JobContext(lease, settings, jobs, registry), spec)

    job = jobs.get(lease.job_id)
    assert job.state is JobStatus.SUCCEEDED and job.rows_done == ROWS
    assert job.scored_on == [ray.get_runtime_context().get_node_id()]
    scored = read_output(settings, lease.job_id, spec.format, lease.token)
    # The input's columns, then the model's; every row once, in the input's order.
    assert list(scored.columns[:5]) == ["row", "f0", "f1", "f2", "f3"]
    assert scored["row"].tolist() == list(range(ROWS))
    bundle = ModelBundle.load(registry.get(spec.model).checkpoint_uri)
    predictions, _ = bundle.predict(table[["f0", "f1", "f2", "f3"]].to_numpy())
    assert scored["prediction"].tolist() == list(predictions)
    assert not (attempt_folder(settings.batches_dir, lease.job_id, lease.token) / "parts").exists()


def test_a_row_that_cannot_be_read_fails_the_job_naming_it(
    batch: Batch, table: pd.DataFrame
) -> None:
    settings, jobs, registry, spec, lease = batch
    datasets = DatasetStore(settings.datasets_of(DEFAULT_TENANT))
    spoiled = table.copy()
    spoiled.loc[9000, "f2"] = np.inf  # in the third piece: a number, but not one to score
    upload = datasets.save(spoiled.to_csv(index=False).encode(), purpose="scoring")
    spec = spec.model_copy(
        update={"dataset": spec.dataset.model_copy(update={"upload": upload.id})}
    )

    with pytest.raises(BatchFailedError, match="9001st row of the table"):
        run_batch(JobContext(lease, settings, jobs, registry), spec)
    assert not attempt_folder(settings.batches_dir, lease.job_id, lease.token).exists()


def test_a_stale_attempt_neither_doubles_nor_removes_the_output(batch: Batch) -> None:
    settings, jobs, registry, spec, first = batch
    job_id = first.job_id
    seconds: list[str] = []

    def first_should_stop() -> bool:
        # Asked about once a second while the first attempt's scorers write. The first
        # time, its lease runs out, the job is claimed again, and the second attempt
        # runs to the end; then the first learns that its claim has ended.
        if not seconds:
            time.sleep(LEASE_S + 0.5)
            assert jobs.reap() == [job_id]
            second = jobs.claim("driver-2")
            assert second is not None
            seconds.append(second.token)
            run_batch(JobContext(second, settings, jobs, registry), spec)
        return not jobs.renew(first)

    run_batch(JobContext(first, settings, jobs, registry, first_should_stop), spec)

    job = jobs.get(job_id)
    assert job.state is JobStatus.SUCCEEDED and job.output_attempt == seconds[0]
    scored = read_output(settings, job_id, "csv", seconds[0])
    # Every row once, in the input's order, after the first attempt has gone.
    assert scored["row"].tolist() == list(range(ROWS))
    assert not attempt_folder(settings.batches_dir, job_id, first.token).exists()


def test_an_attempt_that_ends_abruptly_stops_its_scorers_and_leaves_nothing(
    batch: Batch,
) -> None:
    settings, jobs, registry, spec, lease = batch

    def redis_gone() -> bool:
        raise redis.ConnectionError("Redis went away")

    with pytest.raises(redis.ConnectionError):
        run_batch(JobContext(lease, settings, jobs, registry, redis_gone), spec)
    folder = attempt_folder(settings.batches_dir, lease.job_id, lease.token)
    assert not folder.exists()
    time.sleep(2.0)  # scorers still running would write parts again by now
    assert not folder.exists()
