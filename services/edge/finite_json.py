"""JSON bodies whose numbers are all finite.

FastAPI parses a JSON body with Python's ``json`` module, which reads ``NaN``,
``Infinity`` and ``-Infinity`` (as Python's ``json.dumps`` writes a float that is not
finite) and reads ``1e999`` as infinity. Such a number then either fails validation
with an error FastAPI cannot render (its answer is JSON, which has no NaN): a 500; or
passes where a field has no bounds (a ``quniform`` step of Infinity, a NaN learning
rate later). A route of ``FiniteJSONRoute`` answers 422 naming the field instead,
before anything else reads the body.

``/predict`` keeps its own reading (``nan_is_a_gap``): there NaN is how pandas and
Python write a gap, and the row reader names an infinite cell's instance and column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class _NotFinite:
    """A number of the body that is not finite, as it was written."""

    def __init__(self, text: str) -> None:
        self.text = text


def _float(text: str) -> float | _NotFinite:
    value = float(text)
    return value if math.isfinite(value) else _NotFinite(text)


def first_not_finite(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str, str] | None:
    """(where, as written) of the first number in ``value`` that is not finite."""
    if isinstance(value, _NotFinite):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        return where.lstrip(".") or "the body", value.text
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = first_not_finite(item, (*path, key))
        if found is not None:
            return found
    return None


def loads_finite(body: bytes | str, name: str = "") -> Any:
    """The body's JSON; HTTPException 422 naming the first number that is not finite
    (``name`` before its path: the form field the JSON came in)."""
    parsed = json.loads(body, parse_constant=_NotFinite, parse_float=_float)
    found = first_not_finite(parsed)
    if found is not None:
        where, text = found
        where = f"{name}.{where}" if name and where != "the body" else name or where
        raise HTTPException(
            status_code=422,
            detail=f"{where}: {text} is not a finite number; every number must be finite",
        )
    return parsed


def nan_is_a_gap(endpoint: Endpoint) -> Endpoint:
    """Mark a route whose body may hold NaN (a gap) and infinities (its own errors)."""
    endpoint.nan_is_a_gap = True  # type: ignore[attr-defined]
    return endpoint


class _FiniteJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_finite(await self.body())
        return self._json


class FiniteJSONRoute(APIRoute):
    """A route whose JSON body is refused (422) when a number in it is not finite."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if getattr(self.endpoint, "nan_is_a_gap", False):
            return handler

        async def finite(request: Request) -> Response:
            return await handler(_FiniteJSONRequest(request.scope, request.receive))

        return finite
