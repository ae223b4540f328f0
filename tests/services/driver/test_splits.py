"""A job's data as the driver prepares it: split (stratified for classes), scaled on the
training rows, and a regression target standardised."""

from pathlib import Path

import numpy as np
import pytest

from services.driver.splits import prepare
from shared.data import DatasetStore, load_frame
from shared.spec import DatasetSpec


def test_builtin_digits_is_split_stratified_and_scaled_on_training_rows() -> None:
    spec = DatasetSpec(builtin="digits")
    frame = load_frame(spec, DatasetStore(Path("/nonexistent")))
    data = prepare(frame, spec, "target")
    total = len(data.y_train) + len(data.y_val) + len(data.y_test)
    # Pixels that are blank in every image say nothing: they are ignored.
    ignored = [name for name, role in data.columns.items() if role == "ignore"]
    assert ignored and all(frame[name].nunique() == 1 for name in ignored)
    assert len(data.columns) == 64 and len(data.feature_names) == 64 - len(ignored)
    assert total == 1797 and data.classes == list(range(10))
    assert len(data.y_test) == pytest.approx(0.2 * total, abs=2)
    assert len(data.y_val) == pytest.approx(0.2 * total, abs=2)
    # MinMax fitted on the training split: training rows span [0, 1] exactly.
    assert data.x_train.min() == pytest.approx(0.0) and data.x_train.max() == pytest.approx(1.0)
    # Stratified: every class keeps its share in each split.
    for part in (data.y_train, data.y_val, data.y_test):
        shares = np.bincount(part, minlength=10) / len(part)
        assert shares.min() > 0.08


def test_numeric_target_with_many_values_is_regression() -> None:
    spec = DatasetSpec(builtin="diabetes")
    data = prepare(load_frame(spec, DatasetStore(Path("/nonexistent"))), spec, "target")
    assert data.task == "regression" and data.classes == []
    # Standardised on the training split; the test split keeps the same transform.
    assert abs(float(data.y_train.mean())) < 1e-5 and abs(float(data.y_train.std()) - 1) < 1e-4
    assert data.target_std > 1  # diabetes progression spans hundreds of units
