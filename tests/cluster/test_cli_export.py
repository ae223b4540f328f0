"""`tunefleet export` against a running stack: the files it writes predict what the
served model answers through Serve."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
import torch

from tests.helpers.stack import TUNEFLEET, Stack, digits_rows

pytestmark = pytest.mark.e2e

ROWS = digits_rows(12, seed=21)


def tunefleet(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TUNEFLEET), *args], env={**stack.env, "COLUMNS": "250"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def encoded(names: list[str], plan: dict[str, Any], source: str) -> np.ndarray:
    """ROWS through the preprocessing the file ships, as its users apply it."""
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    matrix: np.ndarray = namespace["transform"](plan, {n: [r[n] for r in ROWS] for n in names})
    return matrix


def torchscript_answers(path: Path) -> tuple[list[Any], np.ndarray]:
    extra = {"metadata.json": ""}
    model = torch.jit.load(path, _extra_files=extra)
    meta = json.loads(extra["metadata.json"])
    matrix = encoded(meta["feature_names"], meta["preprocessing"], meta["preprocessing.py"])
    probabilities = model(torch.from_numpy(matrix)).numpy()
    return [meta["classes"][i] for i in probabilities.argmax(axis=1)], probabilities


def onnx_answers(path: Path) -> tuple[list[Any], np.ndarray]:
    session = onnxruntime.InferenceSession(path)
    meta = session.get_modelmeta().custom_metadata_map
    names, classes = json.loads(meta["feature_names"]), json.loads(meta["classes"])
    matrix = encoded(names, json.loads(meta["preprocessing"]), meta["preprocessing.py"])
    probabilities = session.run(None, {"features": matrix})[0]
    return [classes[i] for i in probabilities.argmax(axis=1)], probabilities


def test_export_writes_files_that_predict_as_the_served_model(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    model_id = quick_job["id"]
    served = stack.http.post(f"/models/{model_id}/predict", json={"instances": ROWS}).json()
    stack.http.put("/models/aliases/exported", json={"model_id": model_id})
    for name, ref, extra_args, read in (
        ("model.pt", model_id, (), torchscript_answers),
        ("model.onnx", "exported", (), onnx_answers),
        # --format wins over an extension that says nothing.
        ("model.bin", model_id, ("--format", "onnx"), onnx_answers),
    ):
        path = tmp_path / name
        done = tunefleet(stack, "export", ref, "-o", str(path), *extra_args)
        assert done.returncode == 0, done.stderr
        assert f"wrote {path}" in done.stdout
        labels, probabilities = read(path)
        assert labels == served["predictions"], name
        np.testing.assert_allclose(probabilities, served["probabilities"], atol=1e-5)
    stack.http.delete("/models/aliases/exported")


def test_export_errors_say_what_to_fix(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    unknown_extension = tunefleet(stack, "export", quick_job["id"], "-o", str(tmp_path / "m.tar"))
    assert unknown_extension.returncode == 1
    assert ".pt (torchscript), .onnx (onnx) or .zip (mlflow)" in unknown_extension.stderr
    assert "--format torchscript|onnx|mlflow" in unknown_extension.stderr
    missing = tunefleet(stack, "export", "f" * 32, "-o", str(tmp_path / "m.pt"))
    assert missing.returncode == 1 and "404" in missing.stderr
    assert not (tmp_path / "m.pt").exists() and not (tmp_path / "m.tar").exists()


def test_export_writes_an_mlflow_model_folder_and_never_into_one_with_files(
    stack: Stack, quick_job: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "digits-model"
    done = tunefleet(stack, "export", quick_job["id"], "-o", str(folder), "--format", "mlflow")
    assert done.returncode == 0, done.stderr
    assert "an MLflow model folder" in done.stdout
    assert (folder / "MLmodel").is_file() and (folder / "data" / "model.onnx").is_file()
    again = tunefleet(stack, "export", quick_job["id"], "-o", str(folder), "--format", "mlflow")
    assert again.returncode == 1 and "not an empty folder" in again.stderr
