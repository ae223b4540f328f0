"""A job's data: the rows with a target split into training, validation and test rows
(stratified for classes), the target encoded, and the preprocessing plan fitted on the
training rows and applied to all three."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from services.driver.prepared import PreparedData
from shared.column_roles import ColumnRole, apply_overrides, infer_roles
from shared.dataset_checks import check_split, plain, usable, validation_share
from shared.errors import DatasetError
from shared.preprocessing import input_columns, output_names, transform
from shared.preprocessing_fit import fit_plan, fit_target
from shared.settings import DEFAULT_MAX_CLASSES
from shared.spec import DatasetSpec
from shared.vocabulary import Task
from shared.wording import listed


def prepare(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    target: str,
    task: Task | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> PreparedData:
    """Split (stratified for classes), encode the target, fit the plan on training rows."""
    table = usable(frame, target, task, max_classes)
    task, labels, features = table.task, table.labels, table.features
    stratify = spec.stratify and task == "classification"
    check_split(labels, spec, stratify)
    roles = job_roles(features, spec)
    classes: list[Any] = []
    if task == "classification":
        classes = sorted(labels.unique().tolist())
        y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    else:
        y = labels.to_numpy(dtype=np.float64)
    training, validation, test = split_rows(y, spec, stratify)
    plan = fit_plan(features.iloc[training], roles, spec.scaler)
    columns = {name: features[name].to_numpy() for name in input_columns(plan)}
    x = transform(plan, columns, strict=False)
    target_plan: dict[str, Any] = {"transform": "none", "mean": 0.0, "std": 1.0}
    if task == "regression":
        target_plan = fit_target(y[training], spec.target_transform)
        learned = np.log1p(y) if target_plan["transform"] == "log" else y
        y = (learned - target_plan["mean"]) / target_plan["std"]
    y = y.astype(np.int64 if task == "classification" else np.float32)
    return PreparedData(
        task=task,
        feature_names=output_names(plan),
        columns={name: role.role for name, role in roles.items()},
        plan=plan,
        classes=[plain(c) for c in classes],
        target_mean=target_plan["mean"],
        target_std=target_plan["std"],
        target_transform=target_plan["transform"],
        rows_without_target=table.rows_without_target,
        x_train=x[training],
        y_train=y[training],
        x_val=x[validation],
        y_val=y[validation],
        x_test=x[test],
        y_test=y[test],
    )


def split_rows(
    y: np.ndarray, spec: DatasetSpec, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training, validation, test) row numbers of the rows with a target: the test
    rows first, then the validation rows from the rest, stratified by ``y`` if asked."""
    rows = np.arange(len(y))
    rest, test = _split(rows, y, spec.test_fraction, spec.seed, stratify)
    training, validation = _split(rest, y[rest], validation_share(spec), spec.seed, stratify)
    return training, validation, test


def job_roles(features: pd.DataFrame, spec: DatasetSpec) -> dict[str, ColumnRole]:
    """Every feature column's role for a job: inferred, then the spec's overrides;
    DatasetError when no column is left to learn from."""
    roles = apply_overrides(infer_roles(features), spec.columns, features)
    if all(role.role == "ignore" for role in roles.values()):
        described = [f"{name!r} ({role.reason})" for name, role in roles.items()]
        raise DatasetError(
            f"every feature column is ignored: {listed(described)}; add columns to learn "
            'from, or set a role in dataset.columns (e.g. {"columns": {"name": "categorical"}})'
        )
    return roles


def _split(
    rows: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray]:
    try:
        kept, held_out = train_test_split(
            rows, test_size=fraction, stratify=y if stratify else None, random_state=seed
        )
    except ValueError as exc:
        # check_split rules out the failures known to it; this names any other.
        raise DatasetError(
            f"cannot split the dataset ({exc}); every class needs enough rows for the "
            "training, validation and test splits: add rows or drop rare classes"
        ) from exc
    return np.asarray(kept), np.asarray(held_out)
