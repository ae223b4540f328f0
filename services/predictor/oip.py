"""The Open Inference Protocol (KServe v2, Triton's HTTP/REST API) in tunefleet's terms:
its tensors in, a model's raw columns out, and its predictions back as tensors.

A request gives the model's columns either as one tensor per column (named by the
column, shape ``[N]`` or ``[N, 1]``; numbers for numeric columns, BYTES for categories
and ISO dates) or as one ``[N, F]`` tensor holding every column in the order of the
model's feature names. Tensor data is JSON (flat or nested, row-major) or, with Triton's
binary tensor extension, raw bytes after the JSON header. A null, or NaN, is a gap.

The answer has two outputs: ``predictions`` (class labels, or values) and, for a
classifier, ``probabilities`` (``[N, classes]``, in the order of the model's classes).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.registry import ModelRecord

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
# Little-endian, as the binary tensor extension lays them out.
NUMPY_TYPE: dict[str, str] = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}  # fmt: skip
PREDICTIONS = "predictions"
PROBABILITIES = "probabilities"
# The header that says how long the JSON part of a binary request or answer is.
HEADER_LENGTH = "Inference-Header-Content-Length"
PLATFORM = "tunefleet_pytorch"


class RequestInput(BaseModel):
    name: str = Field(max_length=256, description="A feature column, or any name for [N, F].")
    shape: list[Annotated[int, Field(ge=0)]] = Field(min_length=1, max_length=2)
    datatype: Datatype
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_size: the tensor's bytes after the JSON."
    )
    data: list[Any] | None = Field(
        default=None, description="Row-major values, flat or nested; absent when binary."
    )


class RequestOutput(BaseModel):
    name: str = Field(max_length=256, description="predictions or probabilities.")
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data: answer this output as raw bytes."
    )


class InferenceRequest(BaseModel):
    id: str | None = Field(default=None, max_length=256)
    parameters: dict[str, Any] | None = Field(
        default=None, description="binary_data_output: answer every output as raw bytes."
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class Tensor(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] = Field(description="Each model is one version: its id.")
    platform: str
    inputs: list[Tensor]
    outputs: list[Tensor]


class OutputTensor(Tensor):
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[OutputTensor]


def request_schema() -> dict[str, Any]:
    """InferenceRequest's JSON schema with its parts inline, for the OpenAPI document."""
    schema = InferenceRequest.model_json_schema()
    parts = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                return inline(parts[ref.rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def metadata(name: str, record: ModelRecord) -> ModelMetadata:
    """The model's inputs (one per column it reads) and outputs, as tensors."""
    inputs = [
        Tensor(name=column, datatype="FP32" if role == "numeric" else "BYTES", shape=[-1])
        for column in record.feature_names
        if (role := record.role_of(column)) != "ignore"
    ]
    outputs = [Tensor(name=PREDICTIONS, datatype=_predictions_type(record), shape=[-1])]
    if record.task != "regression":
        outputs.append(Tensor(name=PROBABILITIES, datatype="FP32", shape=[-1, len(record.classes)]))
    return ModelMetadata(
        name=name, versions=[record.id], platform=PLATFORM, inputs=inputs, outputs=outputs
    )


def read_request(body: bytes, header_length: str | None) -> tuple[InferenceRequest, bytes]:
    """The request's JSON part, and the binary tensor data after it (empty without)."""
    json_part, binary = body, b""
    if header_length is not None:
        try:
            length = int(header_length)
        except ValueError:
            length = -1
        if not 0 <= length <= len(body):
            raise InvalidInputError(
                f"{HEADER_LENGTH} is {header_length!r}; it must be the length of the JSON "
                f"part of the body, at most {len(body)}"
            )
        json_part, binary = body[:length], body[length:]
    try:
        return InferenceRequest.model_validate_json(json_part), binary
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        sent = repr(first.get("input"))
        shown = f" (it is {sent})" if first["loc"] and len(sent) <= 60 else ""
        raise InvalidInputError(f"{where}: {first['msg']}{shown}") from None


def columns_of(
    request: InferenceRequest, binary: bytes, record: ModelRecord, max_rows: int
) -> tuple[dict[str, Any], int]:
    """Raw columns by name for the model's plan, and the number of rows."""
    values = _tensor_values(request.inputs, binary)
    features = record.feature_names
    first = request.inputs[0]
    if len(request.inputs) == 1 and len(first.shape) == 2 and first.shape[1] != 1:
        rows, width = first.shape
        if width != len(features):
            raise InvalidInputError(
                f"input {first.name!r} has shape {first.shape}; a model of {len(features)} "
                f"columns takes [N, {len(features)}] (in the order of its feature names) "
                "or one [N] tensor per column"
            )
        _check_rows(rows, max_rows)
        matrix = values[first.name]
        if isinstance(matrix, np.ndarray):
            table = matrix.reshape(rows, width)
            return {name: table[:, j] for j, name in enumerate(features)}, rows
        return {name: matrix[j::width] for j, name in enumerate(features)}, rows
    return _columns_by_name(request.inputs, values, record, max_rows)


def _columns_by_name(
    inputs: Sequence[RequestInput],
    values: dict[str, Any],
    record: ModelRecord,
    max_rows: int,
) -> tuple[dict[str, Any], int]:
    names = [tensor.name for tensor in inputs]
    unknown = [name for name in names if name not in record.feature_names]
    if unknown or len(set(names)) != len(names):
        problem = f"unknown input {unknown[0]!r}" if unknown else "an input is given twice"
        raise InvalidInputError(
            f"{problem}; the model's inputs are its columns, one [N] tensor each: "
            f"{', '.join(_needed(record))}"
        )
    missing = [name for name in _needed(record) if name not in names]
    if missing:
        raise InvalidInputError(
            f"input {missing[0]!r} is missing; the model reads {', '.join(_needed(record))}"
        )
    rows = inputs[0].shape[0]
    for tensor in inputs:
        if tensor.shape not in ([rows], [rows, 1]):
            raise InvalidInputError(
                f"input {tensor.name!r} has shape {tensor.shape}; a column is [N] or [N, 1], "
                f"with the same N for every column ({inputs[0].name!r} has {rows})"
            )
    _check_rows(rows, max_rows)
    gaps = [None] * rows  # a column the model ignores may be left out
    return {name: values.get(name, gaps) for name in record.feature_names}, rows


def _needed(record: ModelRecord) -> list[str]:
    return [name for name in record.feature_names if record.role_of(name) != "ignore"]


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InvalidInputError("the inputs have no rows; send at least one")
    if rows > max_rows:
        raise PayloadTooLargeError(f"{rows} rows in one request; at most {max_rows} are allowed")


def _tensor_values(inputs: Sequence[RequestInput], binary: bytes) -> dict[str, Any]:
    """Each input's values, flat: a float64 array (NaN for a gap) for numbers, a list of
    strings (None for a gap) for BYTES."""
    values: dict[str, Any] = {}
    offset = 0
    for tensor in inputs:
        size = math.prod(tensor.shape)
        binary_size = (tensor.parameters or {}).get("binary_data_size")
        if binary_size is not None:
            fits = isinstance(binary_size, int) and not isinstance(binary_size, bool)
            if not fits or not 0 <= binary_size <= len(binary) - offset:
                raise InvalidInputError(
                    f"input {tensor.name!r}: binary_data_size {binary_size!r} is more than "
                    "the bytes after the JSON part"
                )
            flat = _from_bytes(tensor, binary[offset : offset + binary_size])
            offset += binary_size
        elif tensor.data is not None:
            flat = _from_json(tensor)
        else:
            raise InvalidInputError(f"input {tensor.name!r} has no data")
        if len(flat) != size:
            raise InvalidInputError(
                f"input {tensor.name!r} has {len(flat)} values; its shape {tensor.shape} "
                f"needs {size}"
            )
        values[tensor.name] = flat
    return values


def _from_json(tensor: RequestInput) -> Any:
    flat = list(_flatten(tensor.data or []))
    if tensor.datatype == "BYTES":
        if not all(value is None or isinstance(value, str) for value in flat):
            raise InvalidInputError(f"input {tensor.name!r} is BYTES: its values are strings")
        return flat
    # A bool is an int to Python; only a BOOL tensor holds them.
    takes = (bool,) if tensor.datatype == "BOOL" else (int, float)
    if not all(
        value is None
        or (isinstance(value, takes) and (tensor.datatype == "BOOL" or not isinstance(value, bool)))
        for value in flat
    ):
        raise InvalidInputError(
            f"input {tensor.name!r} is {tensor.datatype}: its values are "
            + ("true or false" if tensor.datatype == "BOOL" else "numbers (BYTES takes strings)")
        )
    try:
        numbers = np.array(
            [math.nan if value is None else value for value in flat], dtype=np.float64
        )
    except OverflowError:
        raise InvalidInputError(
            f"input {tensor.name!r} holds a number too large for a float"
        ) from None
    if np.isinf(numbers).any():
        raise InvalidInputError(
            f"input {tensor.name!r} holds an infinite number; every number must be finite"
        )
    return numbers


def _flatten(data: list[Any]) -> Any:
    for value in data:
        if isinstance(value, list):
            yield from _flatten(value)
        else:
            yield value


def _from_bytes(tensor: RequestInput, raw: bytes) -> Any:
    if tensor.datatype != "BYTES":
        item = np.dtype(NUMPY_TYPE[tensor.datatype])
        if len(raw) % item.itemsize:
            raise InvalidInputError(
                f"input {tensor.name!r}: {len(raw)} bytes is not a whole number of "
                f"{tensor.datatype} values"
            )
        numbers = np.frombuffer(raw, dtype=item).astype(np.float64)
        if np.isinf(numbers).any():
            raise InvalidInputError(
                f"input {tensor.name!r} holds an infinite number; every number must be finite"
            )
        return numbers
    strings: list[str | None] = []
    offset = 0
    try:
        while offset < len(raw):
            (length,) = struct.unpack_from("<I", raw, offset)
            if offset + 4 + length > len(raw):
                raise struct.error("a string runs past the end")
            strings.append(raw[offset + 4 : offset + 4 + length].decode("utf-8"))
            offset += 4 + length
    except (struct.error, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            f"input {tensor.name!r}: BYTES data is a 4-byte little-endian length before "
            f"each UTF-8 string ({exc})"
        ) from None
    return strings


def response_of(
    name: str,
    record: ModelRecord,
    request: InferenceRequest,
    answer: dict[str, Any],
) -> tuple[bytes, int | None]:
    """The answer's body, and the length of its JSON part when tensors follow as bytes."""
    rows = len(answer["predictions"])
    tensors = {
        PREDICTIONS: (
            _predictions_type(record),
            [rows],
            _labels(answer["predictions"], _predictions_type(record)),
        )
    }
    if answer["probabilities"] is not None:
        probabilities = np.asarray(answer["probabilities"], dtype=np.float32)
        tensors[PROBABILITIES] = ("FP32", list(probabilities.shape), probabilities.ravel())
    wanted = request.outputs or [RequestOutput(name=output) for output in tensors]
    all_binary = bool((request.parameters or {}).get("binary_data_output", False))
    outputs, tail = [], b""
    for output in wanted:
        if output.name not in tensors:
            raise InvalidInputError(
                f"unknown output {output.name!r}; the model's outputs are {', '.join(tensors)}"
            )
        datatype, shape, values = tensors[output.name]
        binary = (output.parameters or {}).get("binary_data", all_binary)
        if binary:
            raw = _to_bytes(datatype, values)
            outputs.append(
                OutputTensor(name=output.name, datatype=datatype, shape=shape,
                             parameters={"binary_data_size": len(raw)})
            )  # fmt: skip
            tail += raw
        else:
            data = values.tolist() if isinstance(values, np.ndarray) else list(values)
            outputs.append(
                OutputTensor(name=output.name, datatype=datatype, shape=shape, data=data)
            )
    body = InferenceResponse(
        model_name=name, model_version=record.id, id=request.id, outputs=outputs
    ).model_dump_json(exclude_none=True)
    head = body.encode()
    return head + tail, (len(head) if tail else None)


def _predictions_type(record: ModelRecord) -> Datatype:
    if record.task == "regression":
        return "FP64"
    labels = record.classes
    if labels and all(isinstance(label, int) and not isinstance(label, bool) for label in labels):
        return "INT64"
    return "BYTES"


def _labels(predictions: list[Any], datatype: Datatype) -> Any:
    if datatype == "BYTES":
        return [label if isinstance(label, str) else json.dumps(label) for label in predictions]
    return np.asarray(predictions, dtype=NUMPY_TYPE[datatype])


def _to_bytes(datatype: Datatype, values: Any) -> bytes:
    if datatype != "BYTES":
        return bytes(np.asarray(values, dtype=NUMPY_TYPE[datatype]).tobytes())
    parts = []
    for value in values:
        encoded = str(value).encode("utf-8")
        parts.append(struct.pack("<I", len(encoded)) + encoded)
    return b"".join(parts)


class OipError(BaseModel):
    error: str = Field(description="What to fix.")
