"""TunefleetError and its subclasses. No HTTP here: the gateway maps them once."""

from __future__ import annotations


class TunefleetError(Exception):
    """Base of every error tunefleet raises on purpose; the message is for a person."""


class NotFoundError(TunefleetError):
    """Raised when a job, dataset or model id names nothing that exists."""


class ConflictError(TunefleetError):
    """Raised when a request is valid but the thing is in the wrong state for it,
    such as predicting with a job that has no model (yet)."""


class InvalidInputError(TunefleetError):
    """Raised when user input is well-formed but cannot be used; says what to fix."""


class DatasetError(InvalidInputError):
    """Raised when a dataset cannot be used for training: names the column or value."""


class PayloadTooLargeError(TunefleetError):
    """Raised when a request or upload is larger than the configured limit."""


class QueueFullError(TunefleetError):
    """Raised when the queue already holds TUNEFLEET_MAX_QUEUED jobs; nothing was written."""

    retry_after_s = 10


class UnauthorizedError(TunefleetError):
    """Raised when API keys are in use and a request has none, or an unknown one."""


class TooManyJobsError(TunefleetError):
    """Raised when a tenant already has its limit of queued and running jobs."""

    retry_after_s = 30


class TooManyStreamsError(TunefleetError):
    """Raised when a tenant already has its limit of open event streams."""

    retry_after_s = 5


class UnsupportedMediaTypeError(TunefleetError):
    """Raised when a request body comes in a content type that the route does not take."""


class LeaseLostError(TunefleetError):
    """Raised when a driver writes for a job whose claim has ended under it (it was
    paused or cut off past its lease, and the job was handed on); nothing was written."""


class StorageUnavailableError(TunefleetError, OSError):
    """Raised when the storage root (a bucket, a shared folder) cannot be reached or is
    not the same for every node; says what to set. An OSError too, so that code which
    copes with a failed write copes with this one."""

    retry_after_s = 30
