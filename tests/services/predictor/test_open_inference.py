"""The Open Inference Protocol (KServe v2 / Triton HTTP) at /v2, through the client that
Triton and KServe users have (tritonclient), against the running stack."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.helpers.stack import MAX_INSTANCES, Stack, digits_rows

pytestmark = pytest.mark.e2e

ROWS = digits_rows(12, seed=5)


@pytest.fixture(params=["", "/models"], ids=["/v2 on the gateway", "/models/v2 on the predictor"])
def client(stack: Stack, request: pytest.FixtureRequest) -> Any:
    """tritonclient on the stack: at the root, or with the predictor's base path."""
    server = triton.InferenceServerClient(url=stack.url.removeprefix("http://") + request.param)
    yield server
    server.close()


def column_inputs(names: list[str], binary: bool) -> list[Any]:
    """One FP32 [N] tensor per column, as a Triton user sends a table."""
    inputs = []
    for name in names:
        tensor = triton.InferInput(name, [len(ROWS)], "FP32")
        values = np.array([row[name] for row in ROWS], dtype=np.float32)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def test_the_server_and_a_model_describe_themselves(
    stack: Stack, client: Any, quick_job: dict[str, Any]
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    model_id = quick_job["id"]
    assert client.is_model_ready(model_id)
    about = client.get_model_metadata(model_id)
    record = stack.http.get(f"/models/{model_id}").json()
    # The columns it reads: digits' blank pixels are ignored, and need not be sent.
    read = [n for n in record["feature_names"] if record["columns"].get(n) != "ignore"]
    assert 0 < len(read) < len(record["feature_names"])
    assert [tensor["name"] for tensor in about["inputs"]] == read
    assert {tensor["datatype"] for tensor in about["inputs"]} == {"FP32"}
    outputs = {tensor["name"]: tensor for tensor in about["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, len(record["classes"])]
    assert outputs["predictions"]["datatype"] == "INT64"  # digits' classes are 0-9
    assert about["versions"] == [model_id]


@pytest.mark.parametrize("binary", [True, False], ids=["binary tensors", "JSON tensors"])
def test_infer_of_raw_columns_equals_predict(
    stack: Stack, client: Any, quick_job: dict[str, Any], binary: bool
) -> None:
    model_id = quick_job["id"]
    names = stack.http.get(f"/models/{model_id}").json()["feature_names"]
    expected = stack.http.post(f"/models/{model_id}/predict", json={"instances": ROWS}).json()
    result = client.infer(model_id, column_inputs(names, binary))
    assert result.as_numpy("predictions").tolist() == expected["predictions"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), expected["probabilities"], rtol=1e-6
    )
    assert result.get_response()["model_version"] == model_id


def test_one_matrix_by_an_alias_equals_predict(
    stack: Stack, client: Any, quick_job: dict[str, Any]
) -> None:
    model_id = quick_job["id"]
    names = stack.http.get(f"/models/{model_id}").json()["feature_names"]
    assert stack.http.put("/models/aliases/oip-digits", json={"model_id": model_id}).is_success
    matrix = triton.InferInput("features", [len(ROWS), len(names)], "FP64")
    matrix.set_data_from_numpy(np.array([[row[n] for n in names] for row in ROWS]))
    wanted = [triton.InferRequestedOutput("predictions", binary_data=False)]
    result = client.infer("oip-digits", [matrix], outputs=wanted)
    expected = stack.http.post(f"/models/{model_id}/predict", json={"instances": ROWS}).json()
    assert result.as_numpy("predictions").tolist() == expected["predictions"]
    assert result.as_numpy("probabilities") is None  # only what was asked for
    assert result.get_response()["model_name"] == "oip-digits"


def test_an_unknown_model_and_a_bad_shape_are_errors_a_client_can_read(
    stack: Stack, client: Any, quick_job: dict[str, Any]
) -> None:
    unknown = "0" * 32
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata(unknown)
    assert missing.value.status() == "404" and unknown in missing.value.message()
    assert not client.is_model_ready(unknown)

    names = stack.http.get(f"/models/{quick_job['id']}").json()["feature_names"]
    narrow = triton.InferInput("features", [2, 5], "FP32")
    narrow.set_data_from_numpy(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(InferenceServerException) as bad_shape:
        client.infer(quick_job["id"], [narrow])
    assert bad_shape.value.status() == "400"
    assert f"[N, {len(names)}]" in bad_shape.value.message()

    too_many = triton.InferInput("features", [MAX_INSTANCES + 1, len(names)], "FP32")
    too_many.set_data_from_numpy(np.zeros((MAX_INSTANCES + 1, len(names)), dtype=np.float32))
    with pytest.raises(InferenceServerException) as large:
        client.infer(quick_job["id"], [too_many])
    assert large.value.status() == "413" and f"at most {MAX_INSTANCES}" in large.value.message()


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "JSON"),
        (b'{"inputs": []}', "inputs"),
        (b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP99", "data": [1]}]}', "FP99"),
        (
            b'{"inputs": [{"name": "pixel_0_0", "shape": [2], "datatype": "FP32", "data": [1]}]}',
            "needs 2",
        ),
    ],
)
def test_a_malformed_request_is_a_400_in_the_protocols_shape(
    stack: Stack, quick_job: dict[str, Any], body: bytes, says: str
) -> None:
    for base in ("", "/models"):
        url = f"{stack.url}{base}/v2/models/{quick_job['id']}/infer"
        answer = httpx.post(url, content=body)
        assert answer.status_code == 400, answer.text
        assert set(answer.json()) == {"error"} and says in answer.json()["error"]
