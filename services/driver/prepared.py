"""PreparedData: a dataset split, scaled and encoded, as arrays.

Its own module, light to import: trial processes unpickle it, and should not have to
import pandas and scikit-learn (about a second of every trial actor's start) to do so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.vocabulary import Task


@dataclass(frozen=True)
class PreparedData:
    """A dataset split, scaled and encoded, ready for training.

    ``plan`` (shared.preprocessing), fitted on the training split only, made the
    arrays from the table's columns (``columns``: each one's role); ``feature_names``
    name the arrays' columns, the network's inputs. Classification: targets
    are class indices into ``classes``. Regression: targets are standardised,
    ``(t(y) - target_mean) / target_std``, t being log1p for ``target_transform`` log.
    """

    task: Task
    feature_names: list[str]
    columns: dict[str, str]
    plan: dict[str, Any]
    classes: list[Any]
    target_mean: float
    target_std: float
    target_transform: str
    rows_without_target: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
