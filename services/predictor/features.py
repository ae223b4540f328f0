"""Turning predict instances into a feature matrix, with errors that name the culprit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from shared.errors import InvalidInputError


def instances_to_matrix(instances: Sequence[Any], feature_names: Sequence[str]) -> np.ndarray:
    """Rows as ``{feature: value}`` objects or lists in feature order -> float matrix.

    Raises InvalidInputError naming the instance (by index) and the feature.
    """
    if not instances:
        raise InvalidInputError('"instances" is empty; send at least one row')
    wanted = set(feature_names)
    rows: list[Sequence[Any]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict):
            if instance.keys() != wanted:
                _by_name(index, instance, feature_names)  # raises, naming what differs
            rows.append([instance[name] for name in feature_names])
        elif isinstance(instance, list):
            if len(instance) != len(feature_names):
                raise InvalidInputError(
                    f"instance {index} has {len(instance)} values; the model takes "
                    f"{len(feature_names)} features in this order: {_names(feature_names)}"
                )
            rows.append(instance)
        else:
            raise InvalidInputError(
                f"instance {index} must be an object of feature values or a list in feature order"
            )
    # The common case in one pass through NumPy; anything odd takes the slow path below,
    # which names the instance and feature at fault.
    if {type(value) for row in rows for value in row} <= {int, float}:
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:  # an integer too large for a float
            matrix = None
        if matrix is not None and np.isfinite(matrix).all():
            return matrix
    for index, row in enumerate(rows):
        for name, value in zip(feature_names, row, strict=True):
            _number(index, name, value)
    raise AssertionError("unreachable: the slow path raises for what NumPy refused")


def _by_name(index: int, instance: dict[str, Any], feature_names: Sequence[str]) -> None:
    missing = [name for name in feature_names if name not in instance]
    extra = sorted(set(instance) - set(feature_names))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing features {_names(missing)}")
        if extra:
            parts.append(f"unknown features {_names(extra)}")
        raise InvalidInputError(
            f"instance {index}: {' and '.join(parts)}; the model takes: {_names(feature_names)}"
        )


def _number(index: int, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"instance {index}, feature {name!r}: {value!r} is not a number")
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        number = math.inf
    if not math.isfinite(number):
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:37]}..."
        raise InvalidInputError(
            f"instance {index}, feature {name!r}: {shown} is not a finite number"
        )
    return number


def _names(names: Sequence[str], shown: int = 12) -> str:
    quoted = ", ".join(repr(n) for n in names[:shown])
    return quoted + (f", ... ({len(names)} in all)" if len(names) > shown else "")
