"""A job's data: the table split into training, validation and test rows (stratified
for classes), the target encoded, and the features scaled on training rows only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from services.driver.prepared import PreparedData
from shared.dataset_checks import check_split, plain, usable, validation_share
from shared.errors import DatasetError
from shared.spec import DatasetSpec
from shared.vocabulary import Task


def prepare(
    frame: pd.DataFrame, spec: DatasetSpec, target: str, task: Task | None = None
) -> PreparedData:
    """Split (stratified for classes), encode the target, fit the scaler on training rows."""
    features, labels, task = usable(frame, target, task)
    stratify = spec.stratify and task == "classification"
    check_split(labels, spec, stratify)
    x = features.to_numpy(dtype=np.float32)
    classes: list[Any] = []
    if task == "classification":
        classes = sorted(labels.unique().tolist())
        y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    else:
        y = labels.to_numpy(dtype=np.float32)
    x_rest, x_test, y_rest, y_test = _split(x, y, spec.test_fraction, spec.seed, stratify)
    x_train, x_val, y_train, y_val = _split(
        x_rest, y_rest, validation_share(spec), spec.seed, stratify
    )
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
        classes=[plain(c) for c in classes],
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


def _split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        parts = train_test_split(
            x, y, test_size=fraction, stratify=y if stratify else None, random_state=seed
        )
    except ValueError as exc:
        # _check_split rules out the failures known to it; this names any other.
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
