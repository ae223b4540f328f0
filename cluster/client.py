"""A small HTTP client of the gateway, for the CLI: errors become one readable line."""

from __future__ import annotations

from typing import Any

import httpx


class ClientError(Exception):
    """What went wrong talking to the gateway, in one line for a person."""


class GatewayClient:
    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self._url = url.rstrip("/")
        self._http = httpx.Client(base_url=self._url, timeout=timeout_s)

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/jobs", json=spec)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/jobs")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(
                f"cannot reach tunefleet at {self._url} ({exc}); is `tunefleet up` running? "
                "Set --url or TUNEFLEET_URL to where it runs"
            ) from exc
        if response.is_success:
            return response.json()
        raise ClientError(f"{response.status_code}: {_detail(response)}")


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
