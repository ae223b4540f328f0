"""The loader of a tunefleet model exported as an MLflow model (its pyfunc flavor).

This file is copied into the exported model's ``code/`` folder as ``tunefleet_pyfunc.py``,
beside ``tunefleet_preprocessing.py`` (the model's preprocessing, shared/preprocessing.py
as /predict runs it). It needs NumPy, pandas and onnxruntime, and nothing of tunefleet:
``mlflow.pyfunc.load_model(folder).predict(dataframe)`` takes raw rows (numbers, text
categories, ISO dates, gaps as NaN or None) and answers what /predict does, as a
dataframe: ``prediction``, and for a classifier ``probability_<class>`` per class.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MODEL_FILE = "model.onnx"
ABOUT_FILE = "model.json"
PREPROCESSING_MODULE = "tunefleet_preprocessing"


def _load_pyfunc(data_path: str) -> TunefleetModel:
    """MLflow's entry point: the model in ``data_path`` (the flavor's data folder)."""
    return TunefleetModel(Path(data_path))


class TunefleetModel:
    def __init__(self, folder: Path) -> None:
        # Here, not above: tunefleet reads this file to ship it, without onnxruntime.
        import onnxruntime

        self.about: dict[str, Any] = json.loads((folder / ABOUT_FILE).read_text())
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # small networks: one thread answers fastest
        self.session = onnxruntime.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.transform = importlib.import_module(PREPROCESSING_MODULE).transform

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        frame = pd.DataFrame(model_input)
        about = self.about
        columns = {}
        for name in about["feature_names"]:
            if name in frame.columns:
                values = frame[name]
                numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(
                    values
                )
                columns[name] = (
                    values.to_numpy(dtype=np.float64)
                    if numeric
                    else [_cell(value) for value in values.tolist()]
                )
            elif about["columns"].get(name) == "ignore":
                columns[name] = [None] * len(frame)
            else:
                raise ValueError(f"the column {name!r} is missing; the model reads it")
        matrix = self.transform(about["preprocessing"], columns).astype(np.float32)
        (outputs,) = self.session.run(None, {about["input"]: matrix})
        if about["task"] == "regression":
            return pd.DataFrame({"prediction": outputs.astype(np.float64)})
        classes = about["classes"]
        answer = pd.DataFrame({"prediction": [classes[i] for i in outputs.argmax(axis=1)]})
        for index, label in enumerate(classes):
            answer[f"probability_{label}"] = outputs[:, index].astype(np.float64)
        return answer


def _cell(value: Any) -> Any:
    """A cell as /predict's JSON would carry it: None for a gap, text for a date."""
    if value is None or (np.ndim(value) == 0 and pd.isna(value)):  # NaN, NaT, pd.NA
        return None
    if hasattr(value, "isoformat"):  # a pandas Timestamp, a datetime or a date
        return value.isoformat()
    if isinstance(value, np.generic):  # a NumPy scalar: what the plan reads as Python's
        return value.item()
    return value
