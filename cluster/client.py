"""The HTTP client of tunefleet that the CLI and the Python SDK (cluster.sdk) share:
one method per route, and every error answer raised as a typed ClientError that
carries the API's own message."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx

from cluster.files import written_whole
from shared.vocabulary import (
    ALIAS_PATTERN,
    JOB_ID_PATTERN,
    JOB_ID_PREFIX_PATTERN,
    MODEL_ID_PATTERN,
    JobStatus,
)

# A stream that drops (a proxy restart, a network blip) is picked up again this often.
EVENT_RECONNECTS = 5
# An ambiguous short id's error lists at most this many of the ids it matches.
MATCHES_LISTED = 10


class ClientError(Exception):
    """What went wrong talking to tunefleet, in one line for a person. ``status`` is the
    HTTP status (None when tunefleet could not be reached) and ``detail`` the API's
    message, which says what to fix."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(f"{status}: {detail}" if status is not None else detail)
        self.status = status
        self.detail = detail


class Unreachable(ClientError):
    """Raised when no tunefleet answers at the URL."""


class Unauthorized(ClientError):
    """Raised for 401: a missing or unknown API key."""


class NotFound(ClientError):
    """Raised for 404: no such job, dataset, model or trial (or another tenant's)."""


class Conflict(ClientError):
    """Raised for 409: the thing is in the wrong state (a job with no model yet, a
    dataset a running job uses, a model an alias points at)."""


class TooLarge(ClientError):
    """Raised for 413: a body or upload past its limit, or a tenant's disk quota."""


class Invalid(ClientError):
    """Raised for 4xx answers that say the request itself is wrong (422, 415, 400):
    a bad spec, dataset or instance; the detail names the field."""


class RateLimited(ClientError):
    """Raised for 429: the queue or a tenant's limit is full; ``retry_after_s`` says
    when to try again."""

    retry_after_s: float | None = None


class Unavailable(ClientError):
    """Raised for 503: tunefleet's Redis is unreachable for now; retry."""

    retry_after_s: float | None = None


class Ambiguous(ClientError):
    """Raised when a short id is the start of more than one job's or model's id;
    ``matches`` holds the ids it starts (at most MATCHES_LISTED of them)."""

    def __init__(self, detail: str, matches: list[str]) -> None:
        super().__init__(detail)
        self.matches = matches


ERROR_OF_STATUS: dict[int, type[ClientError]] = {
    401: Unauthorized,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    429: RateLimited,
    503: Unavailable,
}


def error_of(response: httpx.Response) -> ClientError:
    """The typed error of an answer that is not a success."""
    status = response.status_code
    kind = ERROR_OF_STATUS.get(status, Invalid if 400 <= status < 500 else ClientError)
    error = kind(_detail(response), status)
    retry_after = response.headers.get("retry-after", "")
    if isinstance(error, RateLimited | Unavailable) and retry_after.isdigit():
        error.retry_after_s = float(retry_after)
    return error


class GatewayClient:
    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        self._url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self._url, timeout=timeout_s, headers=headers)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/jobs", json=spec)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def jobs(self, **params: Any) -> list[dict[str, Any]]:
        return self._call_list("GET", "/jobs", params=params)

    def resolve_job(self, ref: str) -> str:
        """The id of the job that ``ref`` names: its id, or the first characters of it
        that no other job's id starts with (as git takes commits). NotFound when none
        starts so, Ambiguous when several do."""
        ref = ref.strip().lower()
        if re.fullmatch(JOB_ID_PATTERN, ref):
            return ref
        if not re.fullmatch(JOB_ID_PREFIX_PATTERN, ref):
            raise Invalid(
                f"{ref!r} is not a job id: ids are 32 hex digits (0-9, a-f), or their first "
                "characters; `tunefleet jobs` lists them"
            )
        # The server matches every job, not just the newest page that GET /jobs lists.
        found = self.jobs(id_prefix=ref, limit=MATCHES_LISTED + 1)
        return _only_match(ref, "job", [view["id"] for view in found], "tunefleet jobs")

    def models(self) -> list[dict[str, Any]]:
        return self._call_list("GET", "/models")

    def aliases(self) -> dict[str, str]:
        return cast(dict[str, str], self._call("GET", "/models/aliases"))

    def resolve_model(self, ref: str) -> str:
        """What to ask the predictor for: a model id as it is; an alias as it is (an
        alias is looked up first, as git takes a branch name before a short id); else
        the id of the one model whose id starts with ``ref``."""
        if re.fullmatch(MODEL_ID_PATTERN, ref):
            return ref
        if re.fullmatch(ALIAS_PATTERN, ref) and ref in self.aliases():
            return ref
        if not re.fullmatch(JOB_ID_PREFIX_PATTERN, ref.lower()):
            raise NotFound(
                f"no model has the alias {ref!r}, and it is not the start of a model id "
                "(hex digits); `tunefleet models` lists the models and aliases"
            )
        # GET /models answers the newest models (100): those are the ids matched here.
        ids = [model["id"] for model in self.models()]
        return _only_match(ref.lower(), "model", ids, "tunefleet models")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/jobs/{job_id}")

    def continue_job(self, job_id: str, epochs: int, top: int) -> dict[str, Any]:
        """POST /jobs/{id}/continue: the new job's id and status URL."""
        return self._call("POST", f"/jobs/{job_id}/continue", json={"epochs": epochs, "top": top})

    def edit(self, job_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """PATCH /jobs/{id}: the job's view as edited."""
        return self._call("PATCH", f"/jobs/{job_id}", json=changes)

    def trials(self, job_id: str, **params: Any) -> list[dict[str, Any]]:
        return self._call_list("GET", f"/jobs/{job_id}/trials", params=params)

    def trials_csv(self, job_id: str, **params: Any) -> str:
        response = self._request(
            "GET", f"/jobs/{job_id}/trials", params={**params, "format": "csv"}
        )
        return response.text

    def history(self, job_id: str, trial_id: str) -> list[dict[str, Any]]:
        return self._call_list("GET", f"/jobs/{job_id}/trials/{trial_id}/history")

    def predict(self, model: str, instances: list[Any]) -> dict[str, Any]:
        return self._call("POST", f"/models/{model}/predict", json={"instances": instances})

    def export_model(self, model: str, export_format: str) -> bytes:
        """The bytes of the model's export: a file (torchscript, onnx) or a zip (mlflow)."""
        response = self._request("GET", f"/models/{model}/export", params={"format": export_format})
        return response.content

    def import_model(self, checkpoint: Path, meta: dict[str, Any]) -> dict[str, Any]:
        with checkpoint.open("rb") as file:
            return self._call(
                "POST",
                "/models/import",
                files={"checkpoint": (checkpoint.name, file)},
                data={"meta": json.dumps(meta)},
            )

    def model(self, model_id: str) -> dict[str, Any]:
        return self._call("GET", f"/models/{model_id}")

    def submit_batch(self, model: str, dataset_id: str, output_format: str) -> dict[str, Any]:
        body = {"dataset": dataset_id, "format": output_format}
        return self._call("POST", f"/models/{model}/batch", json=body)

    def download_output(self, job_id: str, path: Path) -> int:
        """Write a batch job's output to ``path`` as it streams in; the bytes written."""
        written = 0
        try:
            with self._http.stream("GET", f"/jobs/{job_id}/output", timeout=None) as response:
                if not response.is_success:
                    response.read()
                    raise error_of(response)
                with written_whole(path) as partial, partial.open("wb") as out:
                    for chunk in response.iter_bytes():
                        written += out.write(chunk)
        except httpx.HTTPError as exc:
            raise Unreachable(f"the download of job {job_id}'s output broke off ({exc})") from exc
        return written

    def upload(
        self, name: str, content: bytes, target: str | None, purpose: str = "training"
    ) -> dict[str, Any]:
        params = {"target": target} if target else {}
        if purpose != "training":
            params["purpose"] = purpose
        return self._call(
            "POST", "/datasets", params=params, files={"file": (name, content, "text/csv")}
        )

    def datasets(self) -> list[dict[str, Any]]:
        return self._call_list("GET", "/datasets")

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return self._call("GET", f"/datasets/{dataset_id}")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event, data) from GET /jobs/{id}/events until the job ends; reconnects with
        Last-Event-ID when the stream drops, or when the server ends it before the job
        ends (it ends quiet streams, and streams whose Redis went away)."""
        last_id: str | None = None
        failures = 0
        while failures <= EVENT_RECONNECTS:
            headers = {"Last-Event-ID": last_id} if last_id else {}
            try:
                with self._http.stream(
                    "GET", f"/jobs/{job_id}/events", headers=headers, timeout=None
                ) as response:
                    if not response.is_success:
                        response.read()
                        raise error_of(response)
                    kind = ""
                    for line in response.iter_lines():
                        if line.startswith("id: "):
                            last_id = line.removeprefix("id: ")
                        elif line.startswith("event: "):
                            kind = line.removeprefix("event: ")
                        elif line.startswith("data: "):
                            data = json.loads(line.removeprefix("data: "))
                            failures = 0
                            yield kind, data
                            if kind == "job" and JobStatus(data["state"]).is_terminal():
                                return
            except (httpx.TransportError, httpx.StreamError):
                pass
            failures += 1
        raise ClientError(f"lost the event stream of job {job_id}; `tunefleet status` shows it")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        answer: dict[str, Any] = self._request(method, path, **kwargs).json()
        return answer

    def _call_list(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._request(method, path, **kwargs).json()
        return answer

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unreachable(
                f"cannot reach tunefleet at {self._url} ({exc}); is `tunefleet up` running? "
                "Set --url or TUNEFLEET_URL to where it runs"
            ) from exc
        if response.is_success:
            return response
        raise error_of(response)


def _only_match(prefix: str, kind: str, ids: list[str], listing: str) -> str:
    """The one id of ``ids`` that starts with ``prefix``; else NotFound or Ambiguous,
    saying how to see the ids."""
    matches = [found for found in ids if found.startswith(prefix)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise NotFound(f"no {kind} id starts with {prefix!r}; `{listing}` lists them")
    shown = matches[:MATCHES_LISTED]
    more = " and more" if len(matches) > len(shown) else ""
    raise Ambiguous(
        f"{prefix!r} is the start of {len(shown)}{more} {kind} ids: {', '.join(shown)}; "
        "give more of the id",
        shown,
    )


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text
    if isinstance(detail, list):  # pydantic's validation errors
        return "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', []) if p != 'body')}: {error.get('msg')}"
            for error in detail
        )
    return str(detail)
