"""Every Redis key tunefleet uses, and nothing else."""

from __future__ import annotations

PREFIX = "tunefleet"

# Sorted set of job ids a driver holds, scored by the lease's deadline (ms since the
# epoch). A driver renews the lease while it runs the job; any driver moves a job whose
# lease ran out back to its queue (or fails it after max_attempts).
PROCESSING = f"{PREFIX}:processing"
# Sorted set of every job id, scored by submission time (seconds since the epoch).
JOBS = f"{PREFIX}:jobs"
# Sorted set of job ids that have a registered model, scored by registration time.
MODELS = f"{PREFIX}:models"
# Hash of alias name -> model id (the model with the most weight, for a split alias).
ALIASES = f"{PREFIX}:aliases"
# Hash of alias name -> JSON {model id: weight}, for aliases that split their traffic.
ALIAS_SPLITS = f"{PREFIX}:alias-splits"
# Sorted set of live driver ids, scored by their last heartbeat (ms since the epoch).
DRIVERS = f"{PREFIX}:drivers"


# Queued jobs wait in one line per priority and tenant, so that claims can go round the
# tenants (fair share) instead of serving whoever submitted most first.
QUEUE_PREFIX = f"{PREFIX}:queue:"


def queue(priority: str, tenant: str) -> str:
    """List of one tenant's queued job ids of one priority: pushed left, claimed from the
    right (FIFO). ``QUEUE_PREFIX + priority`` alone is the one list per priority that
    held every tenant's jobs before; the queue scripts move what it still holds."""
    return f"{QUEUE_PREFIX}{priority}:{tenant}"


# Sorted set per priority: tenant -> its turn (0 for a tenant that joined since the last
# claim; a served tenant goes one past the highest). Claims go to the lowest turn, the
# tenant served longest ago; a tenant leaves once its line is empty.
QUEUE_TENANTS_PREFIX = f"{PREFIX}:queue_tenants:"


def job(job_id: str) -> str:
    """Hash holding one job's record: spec, state, progress, best result, error."""
    return f"{PREFIX}:job:{job_id}"


def job_trials(job_id: str) -> str:
    """Hash of trial id -> JSON row (config, last metrics, iterations, state)."""
    return f"{PREFIX}:job:{job_id}:trials"


def model(job_id: str) -> str:
    """String holding the JSON record of one job's best model."""
    return f"{PREFIX}:model:{job_id}"


def idempotency(key: str) -> str:
    """String: the job id a POST /jobs with this Idempotency-Key created."""
    return f"{PREFIX}:idempotency:{key}"


def driver(driver_id: str) -> str:
    """String with a TTL: present while the driver is alive (its heartbeat)."""
    return f"{PREFIX}:driver:{driver_id}"


def trial_history(job_id: str, trial_id: str) -> str:
    """Hash of training iteration -> JSON of that epoch's metrics, for one trial."""
    return f"{PREFIX}:job:{job_id}:history:{trial_id}"


def job_events(job_id: str) -> str:
    """Stream of what happened to a job (state and progress changes, trial results),
    read by GET /jobs/{id}/events; capped at JOB_EVENTS_KEPT entries."""
    return f"{PREFIX}:job:{job_id}:events"


JOB_EVENTS_KEPT = 20_000

# String: JSON of the node shapes the cluster has or can start (see shared/capacity.py),
# written by drivers, read by the gateway at submit; expires if no driver refreshes it.
CLUSTER_CAPACITY = f"{PREFIX}:cluster:capacity"

# Hash of SHA-256 (hex) of an API key -> JSON {tenant, admin, created_at}. Keys
# themselves are never stored.
API_KEYS = f"{PREFIX}:api_keys"


def tenant_jobs(tenant: str) -> str:
    """Sorted set of one tenant's job ids, scored by submission time."""
    return f"{PREFIX}:tenant:{tenant}:jobs"


def tenant_active(tenant: str) -> str:
    """Set of one tenant's job ids that may still be queued or running (cleaned lazily)."""
    return f"{PREFIX}:tenant:{tenant}:active"


# SCAN patterns of the per-tenant job indexes above, for pruning them all (tenant names
# hold no glob characters, see shared.auth.TENANT_PATTERN).
TENANT_JOBS_PATTERN = tenant_jobs("*")
TENANT_ACTIVE_PATTERN = tenant_active("*")


# Hash of the queue's counters for /metrics, kept by the queue scripts: jobs submitted,
# jobs ended per end state, epochs reported, and the buckets, count and sum of the
# submit-to-start and job-duration histograms (see shared/queue_scripts.py).
STATS = f"{PREFIX}:stats"
# Hash of the HTTP apps' sums, added to by every gateway and predictor replica about once
# a second (see services/edge/metrics.py): "responses:<app>:<status>" -> answers, and per
# model "predict:<model id>:count|rows|sum|le:<bucket>" -> requests, rows, seconds.
HTTP_STATS = f"{PREFIX}:stats:http"
# Set of the model ids that have series of their own in HTTP_STATS (at most
# services.edge.metrics.MAX_MODEL_SERIES; the rest add to "predict:other:...").
HTTP_STATS_MODELS = f"{PREFIX}:stats:http:models"
