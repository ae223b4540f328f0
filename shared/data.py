"""Datasets: where they come from, what makes one usable, and how it is split and scaled.

A dataset is a table with numeric feature columns and one target column: the class of
each row (classification) or a number (regression). Built-in datasets ship with
scikit-learn; uploaded ones are CSV files kept under the storage root by content hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from shared.errors import DatasetError, NotFoundError
from shared.prepared import PreparedData
from shared.spec import DatasetSpec, Task

DEFAULT_TARGET = "target"
# A numeric target with more distinct values than this, or any fractional value, is
# taken as a regression target when the spec does not say.
MAX_INFERRED_CLASSES = 20
_BUILTIN_LOADERS = {
    "breast_cancer": sk_datasets.load_breast_cancer,
    "digits": sk_datasets.load_digits,
    "wine": sk_datasets.load_wine,
    "iris": sk_datasets.load_iris,
    "diabetes": sk_datasets.load_diabetes,
}


class DatasetSummary(BaseModel):
    """What POST /datasets answers: enough to write a job spec against the dataset."""

    id: str
    rows: int
    columns: list[str]
    target: str
    task: Task
    classes: list[Any] = Field(
        default_factory=list, description="Class labels (classification); empty otherwise."
    )
    class_counts: dict[str, int] = Field(default_factory=dict)


class DatasetStore:
    """Uploaded CSV files under ``<storage>/datasets``, named by content hash."""

    def __init__(self, root: Path) -> None:
        self._root = root

    def save(self, content: bytes, target: str = DEFAULT_TARGET) -> DatasetSummary:
        """Check an uploaded CSV, keep it, and summarise it. DatasetError if unusable."""
        frame = read_csv_bytes(content)
        dataset_id = hashlib.sha256(content + b"\0" + target.encode()).hexdigest()[:32]
        summary = summarize(frame, target, dataset_id)
        self._root.mkdir(parents=True, exist_ok=True)
        _write_atomically(self._root / f"{dataset_id}.csv", content)
        _write_atomically(self._root / f"{dataset_id}.json", summary.model_dump_json().encode())
        return summary

    def summary(self, dataset_id: str) -> DatasetSummary:
        path = self._root / f"{dataset_id}.json"
        if not path.is_file():
            raise NotFoundError(
                f"no uploaded dataset with id {dataset_id!r}; upload it with POST /datasets"
            )
        return DatasetSummary.model_validate(json.loads(path.read_text()))

    def load(self, dataset_id: str) -> pd.DataFrame:
        self.summary(dataset_id)
        return read_csv_bytes((self._root / f"{dataset_id}.csv").read_bytes())


def read_csv_bytes(content: bytes) -> pd.DataFrame:
    """Parse a CSV file, or say why it is not one."""
    if not content.strip():
        raise DatasetError("the file is empty; send a CSV file with a header row")
    try:
        frame = pd.read_csv(io.BytesIO(content))
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"the file is not a readable CSV file: {exc}") from exc
    if frame.empty:
        raise DatasetError("the CSV file has a header but no rows")
    return frame


def load_frame(spec: DatasetSpec, store: DatasetStore) -> pd.DataFrame:
    """The dataset a spec names, as a table."""
    if spec.builtin is not None:
        return _BUILTIN_LOADERS[spec.builtin](as_frame=True).frame
    assert spec.upload is not None  # the spec validates that one source is set
    return store.load(spec.upload)


def target_of(spec: DatasetSpec, store: DatasetStore) -> str:
    """The target column: the spec's, else the one the upload was summarised with."""
    if spec.target is not None:
        return spec.target
    if spec.upload is not None:
        return store.summary(spec.upload).target
    return DEFAULT_TARGET


def summarize(
    frame: pd.DataFrame, target: str, dataset_id: str, task: Task | None = None
) -> DatasetSummary:
    """Check that a table can be trained on and describe it."""
    features, labels, task = _usable(frame, target, task)
    summary = DatasetSummary(
        id=dataset_id, rows=len(frame), columns=list(features.columns), target=target, task=task
    )
    if task == "classification":
        counts = labels.value_counts().sort_index()
        summary.classes = [_plain(c) for c in counts.index]
        summary.class_counts = {str(_plain(c)): int(n) for c, n in counts.items()}
    return summary


def infer_task(labels: pd.Series) -> Task:
    """Regression for a numeric target with fractions or many values, else classification."""
    if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return "classification"
    values = labels.to_numpy(dtype=np.float64)
    fractional = bool(np.any(values != np.round(values)))
    return (
        "regression" if fractional or labels.nunique() > MAX_INFERRED_CLASSES else "classification"
    )


def prepare(
    frame: pd.DataFrame, spec: DatasetSpec, target: str, task: Task | None = None
) -> PreparedData:
    """Split (stratified for classes), encode the target, fit the scaler on training rows."""
    features, labels, task = _usable(frame, target, task)
    x = features.to_numpy(dtype=np.float32)
    classes: list[Any] = []
    if task == "classification":
        classes = sorted(labels.unique().tolist())
        y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    else:
        y = labels.to_numpy(dtype=np.float32)
    stratify = spec.stratify and task == "classification"
    x_rest, x_test, y_rest, y_test = _split(x, y, spec.test_fraction, spec.seed, stratify)
    validation_share = spec.validation_fraction / (1.0 - spec.test_fraction)
    x_train, x_val, y_train, y_val = _split(x_rest, y_rest, validation_share, spec.seed, stratify)
    scale, offset = _fit_scaler(spec.scaler, x_train)
    target_mean, target_std = 0.0, 1.0
    if task == "regression":
        target_mean, target_std = float(y_train.mean()), float(y_train.std()) or 1.0
        y_train, y_val, y_test = (
            ((part - target_mean) / target_std).astype(np.float32)
            for part in (y_train, y_val, y_test)
        )

    def scaled(values: np.ndarray) -> np.ndarray:
        return (values * scale + offset).astype(np.float32)

    return PreparedData(
        task=task,
        feature_names=list(features.columns),
        classes=[_plain(c) for c in classes],
        target_mean=target_mean,
        target_std=target_std,
        scale=scale,
        offset=offset,
        x_train=scaled(x_train),
        y_train=y_train,
        x_val=scaled(x_val),
        y_val=y_val,
        x_test=scaled(x_test),
        y_test=y_test,
    )


def _usable(
    frame: pd.DataFrame, target: str, task: Task | None
) -> tuple[pd.DataFrame, pd.Series, Task]:
    """(features, target column, task) of a table checked for training; DatasetError
    naming the column or value that makes it unusable."""
    features, labels = _features_and_labels(frame, target)
    task = task or infer_task(labels)
    _check_target(labels, target, task)
    return features, labels, task


def _features_and_labels(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise DatasetError(
            f"target column {target!r} is not in the dataset (columns: {shown}); "
            "set dataset.target (or ?target= on upload) to the column holding the classes"
        )
    labels = frame[target]
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DatasetError("the dataset has no feature columns besides the target")
    non_numeric = [
        str(c) for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])
    ]
    if non_numeric:
        raise DatasetError(
            f"feature columns must be numeric; these are not: {', '.join(non_numeric[:20])}"
        )
    values = features.to_numpy(dtype=np.float64)
    finite = np.isfinite(values).all(axis=0)
    bad_columns = [str(c) for c, ok in zip(features.columns, finite, strict=True) if not ok]
    if bad_columns:
        raise DatasetError(
            "feature columns hold missing (NaN) or infinite values: "
            f"{', '.join(bad_columns[:20])}; fill or drop those rows"
        )
    if labels.isna().any():
        raise DatasetError(f"target column {target!r} has {int(labels.isna().sum())} empty rows")
    return features, labels


def _check_target(labels: pd.Series, target: str, task: Task) -> None:
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(labels):
            raise DatasetError(
                f"target column {target!r} is not numeric, so it cannot be a regression "
                'target; use "task": "classification"'
            )
        if not np.isfinite(labels.to_numpy(dtype=np.float64)).all():
            raise DatasetError(f"target column {target!r} holds infinite values")
        if labels.nunique() < 2:
            raise DatasetError(f"target column {target!r} holds one value only")
    elif labels.nunique() < 2:
        raise DatasetError(f"target column {target!r} holds one class only; need at least two")


def _split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        parts = train_test_split(
            x, y, test_size=fraction, stratify=y if stratify else None, random_state=seed
        )
    except ValueError as exc:
        raise DatasetError(
            f"cannot split the dataset ({exc}); every class needs enough rows for the "
            "training, validation and test splits: add rows or drop rare classes"
        ) from exc
    x_a, x_b, y_a, y_b = parts
    return x_a, x_b, y_a, y_b


def _fit_scaler(kind: str, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) with which ``x * scale + offset`` applies the fitted scaler."""
    n_features = x_train.shape[1]
    if kind == "minmax":
        minmax = MinMaxScaler().fit(x_train)
        scale, offset = minmax.scale_, minmax.min_
    elif kind == "standard":
        standard = StandardScaler().fit(x_train)
        scale, offset = 1.0 / standard.scale_, -standard.mean_ / standard.scale_
    else:
        scale, offset = np.ones(n_features), np.zeros(n_features)
    return np.asarray(scale, dtype=np.float32), np.asarray(offset, dtype=np.float32)


def _plain(value: Any) -> Any:
    """A class label as a plain Python value (JSON- and torch.load-safe)."""
    return value.item() if isinstance(value, np.generic) else value


def _write_atomically(path: Path, content: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
        handle.write(content)
    os.replace(handle.name, path)
