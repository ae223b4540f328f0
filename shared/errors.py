"""TunefleetError and its subclasses. No HTTP here: the HTTP edge (services/edge) maps
them to statuses once, and adds to an error about a subject the route that helps."""

from __future__ import annotations

from shared.vocabulary import Subject


class TunefleetError(Exception):
    """Base of every error tunefleet raises on purpose; the message is for a person.

    ``subject`` says what kind of thing the error is about, and ``ref`` which one where
    the next step needs it (an alias's name, the job whose trials to list)."""

    subject: Subject | None = None
    ref: str | None = None

    def __init__(self, message: str, *, subject: Subject | None = None, ref: str | None = None):
        super().__init__(message)
        if subject is not None:
            self.subject = subject
        if ref is not None:
            self.ref = ref


class NotFoundError(TunefleetError):
    """Raised when a job, dataset or model id names nothing that exists."""

    @classmethod
    def no(cls, subject: Subject, name: str) -> NotFoundError:
        """ "no job with id 'abc'": the one message for an id or name that is unknown."""
        named = "" if subject is Subject.ALIAS else " with id"
        return cls(f"no {subject.value}{named} {name!r}", subject=subject, ref=name)


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


class StorageFullError(TunefleetError, OSError):
    """Raised when a write fails for want of room: the disk or quota is full, or a file
    would pass a size limit. Nothing half-written is left where it was going."""


class StorageUnavailableError(TunefleetError, OSError):
    """Raised when the storage root (a bucket, a shared folder) cannot be reached or is
    not the same for every node; says what to set. An OSError too, so that code which
    copes with a failed write copes with this one."""

    retry_after_s = 30
