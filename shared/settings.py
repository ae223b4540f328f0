"""The one settings object of tunefleet, read from TUNEFLEET_* variables at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.folders import tenant_folder

if TYPE_CHECKING:
    from shared.storage import StoragePath


# The most classes a classification target may have (TUNEFLEET_MAX_CLASSES): a model
# answers a probability per class for every row, so an id column taken for a target
# would make every prediction rows x ids.
DEFAULT_MAX_CLASSES = 1_000


class QueuePolicy(BaseModel):
    """The queue's limits and timings, for JobStore (Settings.queue_policy). Its
    defaults are Settings' own, and only there: ``QueuePolicy.default()``."""

    max_queued: int
    max_active_per_tenant: int
    lease_s: float
    max_attempts: int
    retention_s: int
    idempotency_ttl_s: int
    # Fair share: at most this many of one tenant's jobs run at once (0: no limit).
    max_running_per_tenant: int
    # A job that waits this long in its priority moves up one (0: never).
    aging_s: float

    @classmethod
    def default(cls, **changes: Any) -> QueuePolicy:
        """Settings' defaults (not what the environment says), with ``changes``."""
        return Settings.model_construct().queue_policy().model_copy(update=changes)


class Settings(BaseSettings):
    """Everything a tunefleet process may be configured with.

    Every field is read from the environment with the prefix ``TUNEFLEET_``
    (``TUNEFLEET_REDIS_URL``, ``TUNEFLEET_STORAGE``, ...).
    """

    model_config = SettingsConfigDict(env_prefix="TUNEFLEET_", extra="ignore")

    home: Path = Field(
        default=Path(".tunefleet"),
        description="Folder of the embedded stack: its Redis data and, by default, storage.",
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis to use; unset, `tunefleet up` starts an embedded redis-server.",
    )
    redis_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of the embedded redis-server; 0 picks a free one.",
    )
    storage: str | None = Field(
        default=None,
        description="Root for experiments, uploaded datasets and imported models: a "
        "folder (default <home>/storage) or an object-storage URI (s3://bucket/prefix, "
        "gs://bucket/prefix, any URI pyarrow.fs reads).",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        description="An S3-compatible server (http://host:port) for s3:// storage; unset: "
        "AWS, or the AWS_ENDPOINT_URL variable that pyarrow reads.",
    )
    ray_address: str | None = Field(
        default=None,
        validation_alias="RAY_ADDRESS",
        description="Ray cluster to use (Ray's own variable); unset, `tunefleet up` starts one.",
    )
    autoscaler_config: Path = Field(
        default=Path("~/ray_bootstrap_config.yaml").expanduser(),
        description="The cluster launcher's config on the head (written by `ray up`); "
        "its node types count as capacity a trial may get.",
    )
    serve_proxy: Literal["default", "haproxy"] = Field(
        default="haproxy",
        description="Serve's HTTP proxy: the HAProxy-based one (faster), or its Python "
        "proxy ('default' in Serve's own terms); see docs/guides/serving.md.",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    url: str = Field(
        default="http://127.0.0.1:8000",
        description="Where the CLI finds the gateway.",
    )
    max_upload_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    max_body_bytes: int = Field(
        default=1024 * 1024, gt=0, description="Largest JSON request body (job specs, predict)."
    )
    max_dataset_rows: int = Field(default=1_000_000, gt=0)
    max_dataset_columns: int = Field(default=1_000, gt=1)
    max_classes: int = Field(
        default=DEFAULT_MAX_CLASSES,
        gt=1,
        description="Classes of a classification target, and outputs of an imported model: "
        "each row's answer holds a probability per class.",
    )
    max_model_inputs: int = Field(
        default=100_000,
        gt=0,
        description="Inputs of an imported model's first layer (the plan's encoded columns).",
    )
    max_active_jobs_per_tenant: int = Field(
        default=1_000,
        gt=0,
        description="Queued and running jobs one tenant may have; past it, 429.",
    )
    max_instances: int = Field(default=1024, gt=0, description="Rows in one predict request.")
    max_epochs: int = Field(default=1000, gt=0)
    max_trials: int = Field(default=10_000, gt=0)
    max_models_per_replica: int = Field(default=8, gt=0, description="Loaded models (LRU).")
    predict_max_batch_size: int = Field(default=32, gt=0)
    # 0: a lone request is not held back waiting for company; under load, requests that
    # came in while a batch ran still go together in the next.
    predict_batch_wait_s: float = Field(default=0.0, ge=0)
    predictor_min_replicas: int = Field(default=1, ge=0)
    predictor_max_replicas: int = Field(default=2, ge=1)
    driver_poll_s: float = Field(default=1.0, gt=0)
    driver_warm_wait_s: float = Field(
        default=60.0,
        ge=0,
        description="How long a starting driver waits for its warm-up (a tiny job in a "
        "worker per CPU, and in itself) before it goes live and takes jobs; 0: at once.",
    )
    max_queued: int = Field(default=10_000, gt=0, description="Queued jobs; past it, 429.")
    max_running_jobs: int = Field(
        default=1, ge=1, le=64, description="Drivers `tunefleet up` runs: jobs at once."
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job whose driver is silent this long is reclaimed.",
    )
    max_attempts: int = Field(default=3, ge=1, le=100)
    job_retention_s: int = Field(
        default=7 * 24 * 3600, gt=0, description="How long finished jobs' records stay."
    )
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)
    max_running_jobs_per_tenant: int = Field(
        default=0,
        ge=0,
        description="Jobs of one tenant that run at once; its next waits while others' "
        "run (0: no limit). Tenants take turns within a priority either way.",
    )
    queue_aging_s: float = Field(
        default=3600.0,
        ge=0,
        description="A job that waited this long in its priority moves up one "
        "(low -> normal -> high); 0: never.",
    )
    high_priority_tenants: list[str] | None = Field(
        default=None,
        description='Tenants that may submit priority "high" (a JSON list); unset: all.',
    )
    min_trial_cpu: float = Field(
        default=0.5, gt=0, description="The least CPU a job may ask for one trial."
    )
    min_trial_gpu: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="The least GPU fraction a job that asks for GPUs may ask for one trial.",
    )
    pack_memory_bytes: int = Field(
        default=0,
        ge=0,
        description="Bytes one pack of the packed engine may take; packs of large networks "
        "hold fewer members. 0: half the memory Ray gives tasks on a node, per slot.",
    )
    max_concurrent_trials_per_job: int = Field(
        default=256,
        gt=0,
        description="Trials of one job that train at once, whatever its spec asks "
        "(one tenant's at once: this times max_running_jobs_per_tenant).",
    )
    max_event_streams_per_tenant: int = Field(
        default=20,
        gt=0,
        description="Open GET /jobs/{id}/events streams one tenant may have on one gateway "
        "replica; past it, 429.",
    )
    event_stream_idle_s: float = Field(
        default=600.0,
        gt=0,
        description="An event stream that sent nothing but keep-alives this long ends "
        "(clients reconnect with Last-Event-ID).",
    )
    max_dataset_bytes_per_tenant: int = Field(
        default=5 * 1024**3,
        ge=0,
        description="Bytes of uploaded datasets one tenant may keep; an upload past it "
        "is 413. 0: no limit.",
    )
    max_model_bytes_per_tenant: int = Field(
        default=2 * 1024**3,
        ge=0,
        description="Bytes of imported model checkpoints one tenant may keep; an import "
        "past it is 413. 0: no limit.",
    )
    max_batch_bytes_per_tenant: int = Field(
        default=5 * 1024**3,
        ge=0,
        description="Bytes of batch outputs one tenant may keep; a batch job submitted past "
        "it is 413. Outputs go TUNEFLEET_EXPERIMENT_RETENTION_S after their jobs end. 0: "
        "no limit.",
    )
    experiment_retention_s: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="How long a finished job's experiment folder stays whole; then all "
        "but its registered model's checkpoint is removed.",
    )
    housekeeping_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="How often a driver sweeps old experiment folders and prunes the "
        "Redis indexes of expired jobs.",
    )

    batch_max_workers: int = Field(
        default=16,
        gt=0,
        le=1024,
        description="Most Ray workers (one CPU each) one batch scoring job scores on at once.",
    )

    @field_validator("home")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        # Ray Tune needs an absolute storage path, and workers run in other folders.
        return value.expanduser().resolve()

    @field_validator("storage", mode="before")
    @classmethod
    def _folder_or_uri(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and "://" in value):
            return value
        if isinstance(value, str | Path):
            return str(Path(value).expanduser().resolve())  # absolute, as for home
        return value

    @field_validator("storage")
    @classmethod
    def _bucket_named(cls, value: str | None) -> str | None:
        if value is not None and "://" in value and not urlsplit(value).netloc:
            raise ValueError(f"{value}: name the bucket, as in s3://bucket/prefix")
        return value

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{value}: give the server's URL, as in http://host:9000")
        return value

    def queue_policy(self) -> QueuePolicy:
        """The queue's limits and timings, for JobStore."""
        return QueuePolicy(
            max_queued=self.max_queued,
            max_active_per_tenant=self.max_active_jobs_per_tenant,
            lease_s=self.lease_s,
            max_attempts=self.max_attempts,
            retention_s=self.job_retention_s,
            idempotency_ttl_s=self.idempotency_ttl_s,
            max_running_per_tenant=self.max_running_jobs_per_tenant,
            aging_s=self.queue_aging_s,
        )

    @property
    def embedded_redis_url_file(self) -> Path:
        """Where `tunefleet up` writes its embedded Redis's URL while it runs."""
        return self.home / "redis" / "url"

    def storage_at(self, location: str | Path) -> StoragePath:
        """A path or URI in storage (a model's checkpoint_uri), reached with the
        endpoint of these settings."""
        # Imported here: settings is a leaf that any module may import, and storage
        # brings pyarrow (0.1 s) that a CLI call or a health check does not need.
        from shared.storage import storage_path

        return storage_path(location, self.s3_endpoint_url)

    @property
    def storage_root(self) -> StoragePath:
        """The storage root: experiments/, datasets/ and models/ live below it."""
        return self.storage_at(self.storage if self.storage is not None else self.home / "storage")

    @property
    def experiments_dir(self) -> StoragePath:
        return self.storage_root / "experiments"

    @property
    def datasets_dir(self) -> StoragePath:
        return self.storage_root / "datasets"

    @property
    def batches_dir(self) -> StoragePath:
        """Outputs of batch scoring jobs, one folder per job."""
        return self.storage_root / "batches"

    def datasets_of(self, tenant: str) -> StoragePath:
        """A tenant's uploaded datasets (the default tenant's: datasets_dir itself)."""
        return tenant_folder(self.datasets_dir, tenant)

    def batches_of(self, tenant: str) -> StoragePath:
        """A tenant's batch scoring outputs, counted in its quota."""
        return tenant_folder(self.batches_dir, tenant)

    @property
    def models_dir(self) -> StoragePath:
        """Checkpoints of imported models (a job's model stays in its experiment)."""
        return self.storage_root / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
