"""TunefleetError -> HTTP status, for every FastAPI app of tunefleet, in one place."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from shared.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    QueueFullError,
    TunefleetError,
)

STATUS_OF_ERROR: dict[type[TunefleetError], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    PayloadTooLargeError: 413,
    InvalidInputError: 422,
    QueueFullError: 429,
}


def add_error_handlers(app: FastAPI) -> None:
    """Answer every TunefleetError with its status and ``{"detail": message}``."""
    app.add_exception_handler(TunefleetError, _tunefleet_error)


async def _tunefleet_error(request: Request, exc: Exception) -> JSONResponse:
    status = next((code for kind, code in STATUS_OF_ERROR.items() if isinstance(exc, kind)), 500)
    headers = {}
    if isinstance(exc, QueueFullError):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(status_code=status, content={"detail": str(exc)}, headers=headers)
