"""/v2: the Open Inference Protocol (KServe v2 / Triton HTTP) for tunefleet's models, at
/v2 on the gateway (which asks the predictor's replicas) and at /models/v2 on the
predictor itself (one hop fewer, for clients that take a base path).

Health, server and model metadata, model readiness, and inference, with a model named
by its id or the tenant's alias; the same keys, tenants and limits as /models. Errors
answer in the protocol's shape, ``{"error": message}``, a bad request as 400.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.edge.deps import PrincipalDep
from services.edge.metrics import metrics_of
from services.predictor import oip
from services.predictor.deps import OipServicesDep
from services.predictor.lookup import deleted, model_of_ref
from shared.registry import ModelRecord
from shared.vocabulary import MODEL_REF_PATTERN

PREFIX = "/v2"
ERROR = {"description": "What to fix.", "model": oip.OipError}
router = APIRouter(prefix=PREFIX, tags=["open inference protocol"], responses={
    400: ERROR, 404: ERROR, 413: ERROR,
})  # fmt: skip
ModelName = Annotated[str, Path(pattern=MODEL_REF_PATTERN, description="A model id or an alias.")]


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """The server answers."""
    return {"live": True}


@router.get("/health/ready", responses={503: ERROR})
async def ready(services: OipServicesDep) -> dict[str, bool]:
    """The server can reach its registry (503 while Redis is unreachable)."""
    await run_in_threadpool(services.registry.ping)
    return {"ready": True}


@router.get("")
async def server_metadata() -> dict[str, Any]:
    return {"name": "tunefleet", "version": "0.1.0", "extensions": ["binary_tensor_data"]}


@router.get("/models/{name}")
async def model_metadata(
    name: ModelName, services: OipServicesDep, principal: PrincipalDep
) -> oip.ModelMetadata:
    """The model's inputs (one tensor per column it reads; or one [N, F] tensor of every
    column in the order of its feature names) and outputs."""
    return oip.metadata(name, await _record(name, services, principal))


@router.get("/models/{name}/ready")
async def model_ready(
    name: ModelName, services: OipServicesDep, principal: PrincipalDep
) -> dict[str, Any]:
    """200 when the model can answer (a model loads into a replica on its first request)."""
    await _record(name, services, principal)
    return {"name": name, "ready": True}


@router.post(
    "/models/{name}/infer",
    response_model=oip.InferenceResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": oip.request_schema()}},
        }
    },
)
async def infer(
    name: ModelName, request: Request, services: OipServicesDep, principal: PrincipalDep
) -> Response:
    """Predict with a model: its columns as tensors in, ``predictions`` (and, for a
    classifier, ``probabilities``) out. JSON tensor data, or Triton's binary tensor
    extension (the JSON part's length in the Inference-Header-Content-Length header)."""
    started_s = time.perf_counter()
    body, header_length = await request.body(), request.headers.get(oip.HEADER_LENGTH)
    parsed, binary = oip.read_request(body, header_length)
    record = services.registry.cached(name)  # a model id read recently: no Redis
    if record is None or not principal.may_see(record.tenant):
        record = await run_in_threadpool(
            model_of_ref, name, services.registry, services.jobs, principal, True
        )
    columns, rows = oip.columns_of(parsed, binary, record, services.settings.max_instances)
    try:
        answer = await services.predict(record.id, columns)
    except FileNotFoundError as exc:
        raise deleted(record, services.registry) from exc
    content, json_length = oip.response_of(name, record, parsed, answer)
    metrics_of(request.app).observe_prediction(record.id, rows, time.perf_counter() - started_s)
    if json_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={oip.HEADER_LENGTH: str(json_length)},
    )


async def _record(name: str, services: OipServicesDep, principal: PrincipalDep) -> ModelRecord:
    # Redis reads off the event loop.
    return await run_in_threadpool(model_of_ref, name, services.registry, services.jobs, principal)


class OipErrors:
    """Errors under /v2 in the protocol's shape: ``{"error": message}`` for our
    ``{"detail": message}``, and 400 for a request we answer 422 elsewhere."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The path within the app: Serve mounts the predictor's app at /models.
        path = scope.get("path", "").removeprefix(scope.get("root_path", ""))
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def reshape(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held.append(message)
                return
            if held and message["type"] == "http.response.body":
                held.append(message)
                if message.get("more_body"):
                    return
                await _send_reshaped(held, send)
                return
            await send(message)

        await self.app(scope, receive, reshape)


async def _send_reshaped(held: list[Message], send: Send) -> None:
    start, body = held[0], b"".join(m.get("body", b"") for m in held[1:])
    try:
        detail = json.loads(body)["detail"]
    except (ValueError, KeyError, TypeError):
        detail = body.decode("utf-8", "replace") or "error"
    if not isinstance(detail, str):  # FastAPI's list of validation errors
        detail = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg')}"
            for error in detail
        ) if isinstance(detail, list) else str(detail)  # fmt: skip
    content = json.dumps({"error": detail}).encode()
    headers = [
        (key, value)
        for key, value in start.get("headers", [])
        if key.lower() not in (b"content-length", b"content-type")
    ]
    headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    status = 400 if start["status"] == 422 else start["status"]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
