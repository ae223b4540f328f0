"""A model as an MLflow model: a folder (sent as a zip) that ``mlflow.pyfunc.load_model``
loads without tunefleet, preprocessing included.

The folder holds what MLflow's own writers put in one: ``MLmodel`` (the pyfunc flavor,
a signature of the model's columns and outputs, the input example's place),
``input_example.json``, ``requirements.txt``, ``python_env.yaml`` and ``conda.yaml``.
The flavor's ``code/`` has its loader (services/predictor/mlflow_pyfunc.py) and the
preprocessing module /predict runs (shared/preprocessing.py: NumPy and the standard
library only); its ``data/`` has the network as ONNX (the same graph as
``?format=onnx``) and the model's plan, columns and classes as JSON. A model answers
with onnxruntime, NumPy and pandas.
"""

from __future__ import annotations

import inspect
import io
import json
import platform
import time
import uuid
import zipfile
from typing import Any

import yaml

from services.predictor import mlflow_pyfunc
from services.predictor.export import (
    INPUT_NAME,
    PREPROCESSING_SOURCE,
    export_model,
    metadata,
)
from shared import preprocessing
from shared.batch import PREDICTION_COLUMN, PROBABILITY_PREFIX
from shared.model import ModelBundle

LOADER_MODULE = "tunefleet_pyfunc"
# What the model needs where it is loaded, at least these releases (those it was tried
# with), besides MLflow itself.
REQUIREMENTS = ("numpy>=1.26", "pandas>=2.2", "onnxruntime>=1.18")


def mlflow_zip(bundle: ModelBundle, model_id: str) -> bytes:
    """The MLflow model folder of a model, as the bytes of a zip file."""
    files = {
        "MLmodel": yaml.safe_dump(_mlmodel(bundle), sort_keys=False),
        "input_example.json": json.dumps(_input_example(bundle)),
        "requirements.txt": "".join(f"{line}\n" for line in REQUIREMENTS),
        "python_env.yaml": yaml.safe_dump(_python_env(), sort_keys=False),
        "conda.yaml": yaml.safe_dump(_conda_env(), sort_keys=False),
        f"code/{LOADER_MODULE}.py": inspect.getsource(mlflow_pyfunc),
        f"code/{mlflow_pyfunc.PREPROCESSING_MODULE}.py": inspect.getsource(preprocessing),
        f"data/{mlflow_pyfunc.ABOUT_FILE}": json.dumps(_about(bundle, model_id)),
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr(f"data/{mlflow_pyfunc.MODEL_FILE}", export_model(bundle, model_id, "onnx"))
    return buffer.getvalue()


def _about(bundle: ModelBundle, model_id: str) -> dict[str, Any]:
    """The exported files' metadata (columns, classes, plan), less the preprocessing's
    source, which is a module of its own here; and the graph's input name."""
    about = metadata(bundle, model_id)
    del about[PREPROCESSING_SOURCE]
    return {**about, "input": INPUT_NAME}


def _mlmodel(bundle: ModelBundle) -> dict[str, Any]:
    python = platform.python_version()
    return {
        "flavors": {
            "python_function": {
                "loader_module": LOADER_MODULE,
                "code": "code",
                "data": "data",
                "env": {"conda": "conda.yaml", "virtualenv": "python_env.yaml"},
                "python_version": python,
            }
        },
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": time.strftime("%Y-%m-%d %H:%M:%S.000000", time.gmtime()),
        "signature": {
            "inputs": json.dumps(_input_signature(bundle)),
            "outputs": json.dumps(_output_signature(bundle)),
            "params": None,
        },
        # What the signature's "any" leaves out: how the model reads each column.
        "metadata": {
            "roles": {name: bundle.columns.get(name, "numeric") for name in bundle.feature_names},
            "task": bundle.task,
            "classes": list(bundle.classes),
        },
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "type": "dataframe",
            "pandas_orient": "split",
        },
    }


def _input_signature(bundle: ModelBundle) -> list[dict[str, Any]]:
    """MLflow's column specs: the columns the model reads, each of MLflow's type "any".
    Typed specs make MLflow refuse common dataframes before the model sees them (an int64
    column for a "double", numbers or a category dtype for a "string", datetime64 for
    dates: "Can not safely convert"), where the model's plan reads them all as /predict
    does. Each column's role is in the model's metadata."""
    return [
        {"type": "any", "name": name, "required": True}
        for name in bundle.feature_names
        if bundle.columns.get(name, "numeric") != "ignore"
    ]


def _output_signature(bundle: ModelBundle) -> list[dict[str, Any]]:
    if bundle.task == "regression":
        return [{"type": "double", "name": PREDICTION_COLUMN, "required": True}]
    labels = list(bundle.classes)
    integers = all(isinstance(c, int) and not isinstance(c, bool) for c in labels)
    kind = (
        "long" if integers else "double" if all(isinstance(c, float) for c in labels) else "string"
    )
    specs = [{"type": kind, "name": PREDICTION_COLUMN, "required": True}]
    specs += [
        {"type": "double", "name": f"{PROBABILITY_PREFIX}{label}", "required": True}
        for label in labels
    ]
    return specs


def _input_example(bundle: ModelBundle) -> dict[str, Any]:
    """One row of typical values (pandas' split orient): each number at its training
    median or centre, each category its first, a date."""
    by_name = {column["name"]: column for column in bundle.plan["columns"]}
    names = [spec["name"] for spec in _input_signature(bundle)]
    return {"columns": names, "data": [[_typical(by_name.get(name)) for name in names]]}


def _typical(column: dict[str, Any] | None) -> Any:
    if column is None:
        return 0.0
    if column["role"] == "categorical":
        return column["categories"][0] if column["categories"] else None
    if column["role"] == "datetime":
        return "2024-01-01"
    part = column["parts"][0]
    if part.get("quantiles"):
        return part["quantiles"][len(part["quantiles"]) // 2]
    if part["fill"] is not None:
        return part["fill"]
    return -part["offset"] / part["scale"] if part["scale"] else 0.0


def _python_env() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "build_dependencies": ["pip"],
        "dependencies": ["-r requirements.txt"],
    }


def _conda_env() -> dict[str, Any]:
    return {
        "name": "tunefleet-model",
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={platform.python_version()}",
            "pip",
            {"pip": ["mlflow", *REQUIREMENTS]},
        ],
    }
