"""The Open Inference Protocol's tensors in tunefleet's terms (services.predictor.oip):
a table's columns from per-column tensors, one matrix, JSON or binary data, and the
answer's tensors, with errors that say what to fix. No stack: the route's end-to-end
behaviour, through tritonclient, is test_open_inference."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from services.predictor import oip
from shared.errors import InvalidInputError, PayloadTooLargeError
from shared.registry import ModelRecord


def record(task: str = "classification", classes: list[Any] | None = None) -> ModelRecord:
    return ModelRecord(
        id="a" * 32, job_id="a" * 32, checkpoint_uri="/nowhere", task=task, config={},
        metric="val_accuracy", mode="max", validation_value=0.9, test_metrics={},
        feature_names=["age", "city", "joined", "row_id"],
        columns={"age": "numeric", "city": "categorical", "joined": "datetime",
                 "row_id": "ignore"},
        classes=["no", "yes"] if classes is None else classes, created_at=0.0,
    )  # fmt: skip


def request(*inputs: dict[str, Any], **extra: Any) -> tuple[oip.InferenceRequest, bytes]:
    return oip.read_request(json.dumps({"inputs": list(inputs), **extra}).encode(), None)


def columns(*inputs: dict[str, Any], max_rows: int = 100) -> dict[str, Any]:
    parsed, binary = request(*inputs)
    found, _ = oip.columns_of(parsed, binary, record(), max_rows)
    return found


AGE = {"name": "age", "shape": [2], "datatype": "FP32", "data": [31, None]}
CITY = {"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": [["Oslo"], [None]]}
JOINED = {"name": "joined", "shape": [2], "datatype": "BYTES", "data": ["2024-01-02", None]}


def test_metadata_lists_the_columns_a_model_reads_with_their_datatypes() -> None:
    about = oip.metadata("churn", record())
    assert [(t.name, t.datatype) for t in about.inputs] == [
        ("age", "FP32"), ("city", "BYTES"), ("joined", "BYTES"),
    ]  # fmt: skip
    assert [(t.name, t.shape) for t in about.outputs] == [
        ("predictions", [-1]), ("probabilities", [-1, 2]),
    ]  # fmt: skip
    regression = oip.metadata("price", record(task="regression", classes=[]))
    assert [(t.name, t.datatype) for t in regression.outputs] == [("predictions", "FP64")]


def test_per_column_tensors_with_gaps_and_an_ignored_column_left_out() -> None:
    found = columns(AGE, CITY, JOINED)
    assert found["age"][0] == 31 and np.isnan(found["age"][1])
    assert found["city"] == ["Oslo", None]
    assert found["joined"] == ["2024-01-02", None]
    assert found["row_id"] == [None, None]


def test_one_matrix_of_every_column_in_order() -> None:
    matrix = {"name": "rows", "shape": [2, 4], "datatype": "BYTES",
              "data": [["31", "Oslo", "2024-01-02", "7"], ["40", "Rome", None, "8"]]}  # fmt: skip
    found = columns(matrix)
    assert found["city"] == ["Oslo", "Rome"] and found["age"] == ["31", "40"]
    numbers = {"name": "rows", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}
    assert columns(numbers)["joined"].tolist() == [3.0]


def test_binary_tensors_after_the_json_part() -> None:
    ages = np.array([31, 40], dtype="<f4").tobytes()
    cities = b"".join(struct.pack("<I", len(c)) + c for c in (b"Oslo", "Zürich".encode()))
    header = json.dumps({"inputs": [
        {"name": "age", "shape": [2], "datatype": "FP32",
         "parameters": {"binary_data_size": len(ages)}},
        {"name": "city", "shape": [2], "datatype": "BYTES",
         "parameters": {"binary_data_size": len(cities)}},
        JOINED,
    ]}).encode()  # fmt: skip
    parsed, binary = oip.read_request(header + ages + cities, str(len(header)))
    found, rows = oip.columns_of(parsed, binary, record(), 100)
    assert rows == 2 and found["age"].tolist() == [31, 40]
    assert found["city"] == ["Oslo", "Zürich"]
    with pytest.raises(InvalidInputError, match="binary_data_size"):
        oip.columns_of(*oip.read_request(header + ages, str(len(header))), record(), 100)
    flagged = header.replace(b'"binary_data_size": 8', b'"binary_data_size": true')
    assert flagged != header
    with pytest.raises(InvalidInputError, match="binary_data_size"):
        oip.columns_of(*oip.read_request(flagged + ages + cities, str(len(flagged))), record(), 100)
    with pytest.raises(InvalidInputError, match="Inference-Header-Content-Length"):
        oip.read_request(header, "12345678")


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ([AGE, CITY], "input 'joined' is missing"),
        ([AGE, CITY, JOINED, {**AGE, "name": "zip"}], "unknown input 'zip'"),
        ([AGE, CITY, JOINED, AGE], "given twice"),
        ([{**AGE, "shape": [3]}, CITY, JOINED], "needs 3"),
        ([AGE, {**CITY, "shape": [1, 2]}, JOINED], "a column is [N] or [N, 1]"),
        ([{**AGE, "data": ["x", 1]}, CITY, JOINED], "its values are numbers"),
        ([AGE, {**CITY, "data": [1, 2]}, JOINED], "BYTES: its values are strings"),
        ([{"name": "rows", "shape": [2, 3], "datatype": "FP32", "data": [0] * 6}], "[N, 4]"),
        ([{**t, "shape": [0], "data": []} for t in (AGE, CITY, JOINED)], "no rows"),
        ([{**AGE, "data": [10**400, 1]}, CITY, JOINED], "too large for a float"),
        ([{**AGE, "data": [True, 1]}, CITY, JOINED], "its values are numbers"),
    ],
)
def test_inputs_that_do_not_fit_the_model_say_what_to_fix(
    inputs: list[dict[str, Any]], says: str
) -> None:
    with pytest.raises(InvalidInputError) as error:
        columns(*inputs)
    assert says in str(error.value)


def test_too_many_rows_is_too_large_and_infinity_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError, match="at most 1 "):
        columns(AGE, CITY, JOINED, max_rows=1)
    parsed, binary = oip.read_request(
        b'{"inputs": [{"name": "age", "shape": [1], "datatype": "FP32", "data": [Infinity]}]}',
        None,
    )
    with pytest.raises(InvalidInputError, match="finite"):
        oip.columns_of(parsed, binary, record(), 100)


def test_the_answer_as_json_or_binary_tensors() -> None:
    answer = {"predictions": ["yes", "no"], "probabilities": [[0.25, 0.75], [0.5, 0.5]]}
    parsed, _ = request(AGE)
    body, json_length = oip.response_of("churn", record(), parsed, answer)
    assert json_length is None
    outputs = {t["name"]: t for t in json.loads(body)["outputs"]}
    assert outputs["predictions"] == {
        "name": "predictions", "datatype": "BYTES", "shape": [2], "data": ["yes", "no"]
    }  # fmt: skip
    assert outputs["probabilities"]["data"] == [0.25, 0.75, 0.5, 0.5]

    parsed, _ = request(
        AGE, outputs=[{"name": "probabilities", "parameters": {"binary_data": True}}]
    )
    body, json_length = oip.response_of("churn", record(), parsed, answer)
    assert json_length is not None
    (only,) = json.loads(body[:json_length])["outputs"]
    assert only["name"] == "probabilities" and only["parameters"]["binary_data_size"] == 16
    assert np.frombuffer(body[json_length:], "<f4").tolist() == [0.25, 0.75, 0.5, 0.5]

    parsed, _ = request(AGE, outputs=[{"name": "scores"}])
    with pytest.raises(InvalidInputError, match="unknown output 'scores'"):
        oip.response_of("churn", record(), parsed, answer)
