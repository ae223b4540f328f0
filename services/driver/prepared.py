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

    Features are scaled as ``x * scale + offset`` with parameters fitted on the
    training split only. Classification: targets are class indices into ``classes``.
    Regression: targets are standardised, ``(y - target_mean) / target_std``.
    """

    task: Task
    feature_names: list[str]
    classes: list[Any]
    target_mean: float
    target_std: float
    scale: np.ndarray
    offset: np.ndarray
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
