"""Every Redis key tunefleet uses, and nothing else."""

from __future__ import annotations

PREFIX = "tunefleet"

# List of job ids waiting to run. New ids are pushed on the left and claimed from
# the right, so the queue is first in, first out.
QUEUE = f"{PREFIX}:queue"
# List of job ids a driver has claimed and not yet acknowledged. Claiming moves an
# id here atomically (BLMOVE), so a job is never only in a driver's memory.
PROCESSING = f"{PREFIX}:processing"
# Sorted set of every job id, scored by submission time (seconds since the epoch).
JOBS = f"{PREFIX}:jobs"
# Sorted set of job ids that have a registered model, scored by registration time.
MODELS = f"{PREFIX}:models"


def job(job_id: str) -> str:
    """Hash holding one job's record: spec, state, progress, best result, error."""
    return f"{PREFIX}:job:{job_id}"


def job_trials(job_id: str) -> str:
    """Hash of trial id -> JSON row (config, last metrics, iterations, state)."""
    return f"{PREFIX}:job:{job_id}:trials"


def model(job_id: str) -> str:
    """String holding the JSON record of one job's best model."""
    return f"{PREFIX}:model:{job_id}"
