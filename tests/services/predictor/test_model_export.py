"""GET /models/{id}/export in process (no Serve): the exported files predict what
/predict answers, loaded with plain torch and onnxruntime, without tunefleet; and an
MLflow model, loaded with ``mlflow.pyfunc.load_model`` in a separate environment that
has MLflow and no tunefleet, predicts on a dataframe of raw rows what /predict answers."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis
import torch
from fastapi.testclient import TestClient

from cluster.files import write_export
from cluster.redis_server import RedisServer
from services.driver.splits import prepare
from services.driver.training import TrialPlan, train_trial
from services.predictor.app import create_app
from services.predictor.deps import PredictFn
from shared.auth import KeyStore
from shared.data import DatasetStore, load_frame
from shared.model import ModelBundle
from shared.registry import ModelRegistry
from shared.settings import Settings
from shared.spec import DatasetSpec
from tests.helpers.tables import messy_frame, wide_frame

IRIS_LABELS = {0: "setosa", 1: "versicolor", 2: "virginica"}
# Loads both files as someone without tunefleet would: any import of its packages fails.
LOADER = """
import json, sys
for package in ("shared", "services", "cluster", "tests"):
    sys.modules[package] = None
import numpy as np, onnxruntime, torch

rows = json.loads(sys.stdin.read())
extra = {"metadata.json": ""}
scripted = torch.jit.load(sys.argv[1], _extra_files=extra)
meta = json.loads(extra["metadata.json"])
session = onnxruntime.InferenceSession(sys.argv[2])
onnx_meta = session.get_modelmeta().custom_metadata_map
answers = {}
for name, names, classes, plan, source, run in (
    ("torchscript", meta["feature_names"], meta["classes"], meta["preprocessing"],
     meta["preprocessing.py"], lambda x: scripted(torch.from_numpy(x)).numpy()),
    ("onnx", json.loads(onnx_meta["feature_names"]), json.loads(onnx_meta["classes"]),
     json.loads(onnx_meta["preprocessing"]), onnx_meta["preprocessing.py"],
     lambda x: session.run(None, {"features": x})[0]),
):
    # The preprocessing shipped in the file, applied as its docstring says.
    namespace = {}
    exec(source, namespace)
    columns = {f: [row.get(f) for row in rows] for f in names}
    outputs = run(namespace["transform"](plan, columns))
    labels = [classes[i] for i in outputs.argmax(axis=1)] if outputs.ndim == 2 else None
    answers[name] = {"labels": labels, "outputs": outputs.tolist(), "task": meta["task"],
                     "onnx_task": onnx_meta["task"]}
print(json.dumps(answers))
"""


def trained_checkpoint(
    data_spec: DatasetSpec,
    relabel: dict[Any, Any] | None,
    frame: pd.DataFrame | None = None,
    target: str = "target",
) -> bytes:
    """A real trial's last checkpoint (two hidden layers, BatchNorm, dropout), as saved."""
    if frame is None:
        frame = load_frame(data_spec, DatasetStore(Path("/nonexistent")))
    if relabel:
        frame["target"] = frame["target"].map(relabel)
    data = prepare(frame, data_spec, target)
    payloads: list[dict[str, Any]] = []
    config = {
        "lr": 0.01, "batch_size": 16, "dropout": 0.2, "hidden_units": 16,
        "hidden_layers": 2, "weight_decay": 0.0, "epochs": 6,
    }  # fmt: skip
    plan = TrialPlan(data=data, metric="val_loss", mode="min", seed=5)
    train_trial(config, plan, lambda metrics, payload: payloads.append(payload or {}))
    buffer = io.BytesIO()
    torch.save(payloads[-1], buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def iris_checkpoint() -> bytes:
    return trained_checkpoint(DatasetSpec(builtin="iris"), IRIS_LABELS)


@pytest.fixture(scope="module")
def messy_checkpoint() -> bytes:
    """A classifier of a table with text, gaps and dates, its spend dropped."""
    frame = messy_frame().drop(columns=["spend"])
    return trained_checkpoint(DatasetSpec(upload="0" * 32), None, frame, "churned")


@pytest.fixture(scope="module")
def spend_checkpoint() -> bytes:
    """A regression on a skewed amount, learned on a log scale."""
    frame = messy_frame().drop(columns=["churned"])
    spec = DatasetSpec(upload="0" * 32, target_transform="log", scaler="quantile")
    return trained_checkpoint(spec, None, frame, "spend")


@pytest.fixture(scope="module")
def stores_checkpoint() -> bytes:
    """A classifier whose store column (120 categories) is embedded."""
    return trained_checkpoint(DatasetSpec(upload="0" * 32), None, wide_frame(), "level")


@pytest.fixture(scope="module")
def diabetes_checkpoint() -> bytes:
    return trained_checkpoint(DatasetSpec(builtin="diabetes", scaler="standard"), None)


def rows_of(builtin: str, count: int) -> list[dict[str, float]]:
    frame = load_frame(DatasetSpec(builtin=builtin), DatasetStore(Path("/nonexistent")))
    rows: list[dict[str, float]] = (
        frame.drop(columns=["target"]).sample(count, random_state=4).to_dict(orient="records")
    )
    return rows


def checkpoint_predictions(settings: Settings, registry: ModelRegistry) -> PredictFn:
    """What the Serve deployment does for each model, without its batching."""

    async def predict(model_id: str, columns: dict[str, Any]) -> dict[str, Any]:
        record = registry.get(model_id)
        bundle = ModelBundle.load(settings.storage_at(record.checkpoint_uri))
        labels, probabilities = bundle.predict_encoded(bundle.encode(columns))
        return {
            "predictions": labels,
            "probabilities": None if probabilities is None else probabilities.tolist(),
        }

    return predict


@pytest.fixture
def models(redis_client: redis.Redis, redis_server: RedisServer, tmp_path: Path) -> TestClient:
    settings = Settings(redis_url=redis_server.url, home=tmp_path)
    registry = ModelRegistry(redis_client)
    app = create_app(settings, registry, checkpoint_predictions(settings, registry))
    return TestClient(app, base_url="http://127.0.0.1")


def imported(models: TestClient, checkpoint: bytes, **headers: str) -> str:
    answer = models.post(
        "/import",
        files={"checkpoint": ("model.pt", checkpoint)},
        data={"meta": json.dumps({"validation_value": 0.5})},
        headers=headers,
    )
    assert answer.status_code == 201, answer.text
    model_id: str = answer.json()["id"]
    return model_id


def exported_answers(
    models: TestClient, ref: str, rows: list[dict[str, float]], folder: Path
) -> dict[str, Any]:
    """Both files of the model, written to disk and run by the loader."""
    paths = []
    for export_format, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        answer = models.get(f"/{ref}/export", params={"format": export_format})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-disposition"].endswith(f'{suffix}"')
        path = folder / f"model{suffix}"
        path.write_bytes(answer.content)
        paths.append(str(path))
    done = subprocess.run(
        [sys.executable, "-c", LOADER, *paths],
        input=json.dumps(rows), capture_output=True, text=True, cwd=folder, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers: dict[str, Any] = json.loads(done.stdout)
    return answers


def test_exported_classifiers_predict_what_the_service_does(
    models: TestClient, iris_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, iris_checkpoint)
    # Features by name, shuffled: the files take them in the order of their metadata.
    rows = [dict(reversed(row.items())) for row in rows_of("iris", 30)]
    served = models.post(f"/{model_id}/predict", json={"instances": rows}).json()
    assert set(served["predictions"]) <= set(IRIS_LABELS.values())
    answers = exported_answers(models, model_id, rows, tmp_path)
    for export_format in ("torchscript", "onnx"):
        answer = answers[export_format]
        assert answer["task"] == answer["onnx_task"] == "classification"
        assert answer["labels"] == served["predictions"], export_format
        np.testing.assert_allclose(
            answer["outputs"], served["probabilities"], atol=1e-5, err_msg=export_format
        )


def test_an_exported_regression_model_answers_values_in_the_targets_units(
    models: TestClient, diabetes_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, diabetes_checkpoint)
    rows = rows_of("diabetes", 25)
    served = models.post(f"/{model_id}/predict", json={"instances": rows}).json()
    assert served["probabilities"] is None
    answers = exported_answers(models, model_id, rows, tmp_path)
    for export_format in ("torchscript", "onnx"):
        answer = answers[export_format]
        assert answer["task"] == "regression" and answer["labels"] is None
        # Values of 25-346: float32 rounding of that size, not a difference in scaling.
        np.testing.assert_allclose(
            answer["outputs"], served["predictions"], rtol=1e-6, err_msg=export_format
        )


def assert_same_classes(answers: dict[str, Any], served: dict[str, Any]) -> None:
    """Both files answer the labels and probabilities /predict does."""
    for export_format in ("torchscript", "onnx"):
        answer = answers[export_format]
        assert answer["labels"] == served["predictions"], export_format
        np.testing.assert_allclose(
            answer["outputs"], served["probabilities"], atol=1e-5, err_msg=export_format
        )


def raw_rows() -> list[dict[str, Any]]:
    """Rows as a user sends them: gaps, an unseen region, a date with a time, a numeric
    string, and the id column the model ignores left out of some."""
    rows: list[dict[str, Any]] = [
        {"region": "north", "plan": "yes", "age": 61, "signup": "2022-08-14"},
        {"region": None, "plan": "no", "age": None, "signup": "2021-02-01T09:30:00"},
        {"region": "atlantis", "plan": "yes", "age": "38.5", "signup": None},
        {"region": "west", "plan": None, "age": 25, "signup": "2023-06-30"},
    ]
    for row in rows:
        row["country"] = "NL"
    rows[0]["customer_id"] = "C1"
    return rows


def test_exports_of_a_table_with_text_gaps_and_dates_predict_what_the_service_does(
    models: TestClient, messy_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, messy_checkpoint)
    rows = raw_rows()
    served = models.post(f"/{model_id}/predict", json={"instances": rows})
    assert served.status_code == 200, served.text
    answers = exported_answers(models, model_id, rows, tmp_path)
    assert_same_classes(answers, served.json())


def test_exports_of_a_log_scale_regression_answer_in_the_targets_units(
    models: TestClient, spend_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, spend_checkpoint)
    rows = raw_rows()
    served = models.post(f"/{model_id}/predict", json={"instances": rows}).json()
    # Spend is tens of units, never below zero: the log scale is undone.
    assert all(value > 0 for value in served["predictions"])
    answers = exported_answers(models, model_id, rows, tmp_path)
    for export_format in ("torchscript", "onnx"):
        np.testing.assert_allclose(
            answers[export_format]["outputs"], served["predictions"], rtol=1e-5
        )


def test_an_alias_exports_its_model_and_other_tenants_see_nothing(
    models: TestClient, redis_server: RedisServer, iris_checkpoint: bytes
) -> None:
    store = KeyStore.from_url(redis_server.url)
    alpha = {"Authorization": f"Bearer {store.create('alpha')}"}
    beta = {"Authorization": f"Bearer {store.create('beta')}"}
    model_id = imported(models, iris_checkpoint, **alpha)
    promoted = models.put("/aliases/prod", json={"model_id": model_id}, headers=alpha)
    assert promoted.status_code == 200
    by_id = models.get(f"/{model_id}/export", params={"format": "onnx"}, headers=alpha)
    by_alias = models.get("/prod/export", params={"format": "onnx"}, headers=alpha)
    assert by_alias.status_code == 200 and by_alias.content == by_id.content
    assert by_alias.headers["content-disposition"] == f'attachment; filename="{model_id}.onnx"'
    # Without ?format, TorchScript.
    plain = models.get(f"/{model_id}/export", headers=alpha)
    assert plain.headers["content-disposition"].endswith('.pt"')

    hidden = models.get(f"/{model_id}/export", headers=beta)
    assert hidden.status_code == 404 and "no model with id" in hidden.json()["detail"]
    assert models.get("/prod/export", headers=beta).status_code == 404
    assert models.get(f"/{model_id}/export").status_code == 401


def test_a_bad_format_is_422_naming_the_formats_and_a_deleted_model_is_404(
    models: TestClient, iris_checkpoint: bytes
) -> None:
    model_id = imported(models, iris_checkpoint)
    wrong = models.get(f"/{model_id}/export", params={"format": "pickle"})
    assert wrong.status_code == 422
    detail = json.dumps(wrong.json()["detail"])
    assert "format" in detail and "'torchscript'" in detail and "'onnx'" in detail
    assert models.delete(f"/{model_id}").status_code == 204
    gone = models.get(f"/{model_id}/export", params={"format": "onnx"})
    assert gone.status_code == 404 and model_id in gone.json()["detail"]


def test_exports_of_a_model_with_embedded_columns_predict_what_the_service_does(
    models: TestClient, stores_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, stores_checkpoint)
    # Known stores, a gap, a store never seen, a store as a number-like string.
    rows = [
        {"store": "S001", "size": 0.3},
        {"store": "S042", "size": -1.2},
        {"store": None, "size": 0.0},
        {"store": "S999", "size": 2.5},
        {"store": "S017", "size": "1.5"},
    ]
    served = models.post(f"/{model_id}/predict", json={"instances": rows})
    assert served.status_code == 200, served.text
    assert len(set(served.json()["predictions"])) == 2  # the store moves the answer
    answers = exported_answers(models, model_id, rows, tmp_path)
    assert_same_classes(answers, served.json())


# MLflow

MLFLOW_LOCK = Path(__file__).resolve().parents[2] / "mlflow" / "mlflow-env.lock"
# What a user of the exported model runs, where tunefleet was never installed.
MLFLOW_LOADER = """
import importlib.util, json, sys
assert all(importlib.util.find_spec(p) is None for p in ("shared", "services", "cluster"))
import mlflow.pyfunc, pandas as pd

model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pd.read_json(sys.stdin, orient="split", convert_dates=False)
answer = model.predict(frame)
# The same rows in the dtypes a user's dataframe has: whole numbers as (nullable)
# integers, categories as a category or string dtype, dates as datetime64, gaps as NA.
typed = frame.copy()
for name in typed.columns:
    if pd.api.types.is_float_dtype(typed[name]) and (typed[name].dropna() % 1 == 0).all():
        typed[name] = typed[name].astype("Int64")
    elif name == "signup":
        typed[name] = pd.to_datetime(typed[name], format="ISO8601")
    elif name == "region":
        typed[name] = typed[name].astype("category")
    elif typed[name].dtype == object:
        typed[name] = typed[name].astype("string")
example = model.input_example
print(json.dumps({
    "answer": answer.to_dict(orient="list"),
    "typed": model.predict(typed).to_dict(orient="list"),
    "inputs": model.metadata.get_input_schema().input_names(),
    "outputs": model.metadata.get_output_schema().input_names(),
    "example": model.predict(example).to_dict(orient="list"),
}))
"""


@pytest.fixture(scope="session")
def mlflow_python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment of MLflow, onnxruntime, pandas and NumPy (the lock's
    releases), made with the uv that `make` installs beside the project."""
    folder = tmp_path_factory.mktemp("mlflow-env") / "venv"
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, folder], check=True)
    python = folder / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", python, "-r", MLFLOW_LOCK],
        check=True,
        timeout=600,
    )
    yield python


def loaded_answers(
    models: TestClient, python: Path, ref: str, frame: pd.DataFrame, folder: Path
) -> dict[str, Any]:
    exported = models.get(f"/{ref}/export", params={"format": "mlflow"})
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-disposition"].endswith('.zip"')
    write_export(exported.content, "mlflow", folder / "model")  # as the CLI and SDK do
    done = subprocess.run(
        [python, "-c", MLFLOW_LOADER, str(folder / "model")],
        input=frame.to_json(orient="split"), capture_output=True, text=True, cwd=folder,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answers: dict[str, Any] = json.loads(done.stdout)
    return answers


def messy_rows() -> pd.DataFrame:
    """A dataframe as a user has one: text categories with gaps, an unseen region, dates
    as text, a number missing, and the id column the model ignores."""
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4"],
            "region": ["north", None, "atlantis", "west"],
            "plan": ["yes", "no", "yes", None],
            "age": [61.0, np.nan, 38.0, 25.0],
            "signup": ["2022-08-14", "2021-02-01T09:30:00", None, "2023-06-30"],
            "country": ["NL"] * 4,
        }
    )


@pytest.mark.venv
def test_an_mlflow_model_of_a_raw_table_predicts_what_the_service_does(
    models: TestClient, mlflow_python: Path, messy_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, messy_checkpoint)
    frame = messy_rows()
    rows = json.loads(frame.to_json(orient="records"))
    served = models.post(f"/{model_id}/predict", json={"instances": rows})
    assert served.status_code == 200, served.text
    expected = served.json()
    answers = loaded_answers(models, mlflow_python, model_id, frame, tmp_path)
    assert answers["answer"]["prediction"] == expected["predictions"]
    assert answers["typed"] == answers["answer"]  # whatever the dataframe's dtypes
    classes = expected["model"]["classes"]
    probabilities = [answers["answer"][f"probability_{label}"] for label in classes]
    np.testing.assert_allclose(np.array(probabilities).T, expected["probabilities"], atol=1e-5)
    # The signature: the columns it reads (not the ignored id), and what it answers.
    assert "customer_id" not in answers["inputs"] and "region" in answers["inputs"]
    assert answers["outputs"] == ["prediction", *(f"probability_{c}" for c in classes)]
    assert len(answers["example"]["prediction"]) == 1  # its input example predicts


@pytest.mark.venv
def test_an_mlflow_regression_model_answers_in_the_targets_units(
    models: TestClient, mlflow_python: Path, diabetes_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, diabetes_checkpoint)
    rows = rows_of("diabetes", 25)
    served = models.post(f"/{model_id}/predict", json={"instances": rows}).json()
    answers = loaded_answers(models, mlflow_python, model_id, pd.DataFrame(rows), tmp_path)
    np.testing.assert_allclose(answers["answer"]["prediction"], served["predictions"], rtol=1e-6)
    np.testing.assert_allclose(answers["typed"]["prediction"], served["predictions"], rtol=1e-6)
    assert answers["outputs"] == ["prediction"]


def test_the_mlflow_folder_holds_what_mlflow_writes(
    models: TestClient, iris_checkpoint: bytes, tmp_path: Path
) -> None:
    model_id = imported(models, iris_checkpoint)
    exported = models.get(f"/{model_id}/export", params={"format": "mlflow"})
    names = set(zipfile.ZipFile(io.BytesIO(exported.content)).namelist())
    assert {"MLmodel", "input_example.json", "requirements.txt", "python_env.yaml",
            "conda.yaml", "data/model.onnx"} <= names  # fmt: skip
    # The CLI and SDK write the folder, or the zip when the path says .zip; never into a
    # folder that has files.
    assert "files" in write_export(exported.content, "mlflow", tmp_path / "model")
    assert (tmp_path / "model" / "MLmodel").is_file()
    assert "bytes" in write_export(exported.content, "mlflow", tmp_path / "model.zip")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        write_export(exported.content, "mlflow", tmp_path / "model")
