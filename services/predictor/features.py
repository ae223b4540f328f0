"""Predict instances as raw columns for a model's preprocessing plan, with errors that
name the culprit: the instance (by index) and the column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from shared.errors import InvalidInputError


def instances_to_columns(
    instances: Sequence[Any],
    feature_names: Sequence[str],
    roles: Mapping[str, str],
    target: str | None = None,
) -> dict[str, Any]:
    """Rows as ``{column: value}`` objects, or lists in the order of ``feature_names``
    -> each column's values by name (a float array where every value is a number).

    An object needs every column the model reads (null for a gap); a column the model
    ignores, and the ``target`` (rows of the table it trained on), may be there or not.
    A list gives every column, ignored ones included.
    Raises InvalidInputError naming the instance (by index) and the column. The
    values themselves are read by the model's plan (shared.preprocessing).
    """
    if not instances:
        raise InvalidInputError('"instances" is empty; send at least one row')
    needed = [name for name in feature_names if roles.get(name, "numeric") != "ignore"]
    allowed = {*feature_names, *([target] if target else [])}
    # An object's values in column order, read in C rather than by a Python loop over
    # its cells. itemgetter of one name gives a value, not a tuple.
    in_order = itemgetter(*feature_names) if len(feature_names) > 1 else None
    rows: list[Sequence[Any]] = []
    for index, instance in enumerate(instances):
        if isinstance(instance, dict):
            if in_order is not None and instance.keys() == allowed:
                rows.append(in_order(instance))
                continue
            _by_name(index, instance, needed, allowed)  # raises if it must
            rows.append([instance.get(name) for name in feature_names])
        elif isinstance(instance, list):
            if len(instance) != len(feature_names):
                raise InvalidInputError(
                    f"instance {index} has {len(instance)} values; the model takes "
                    f"{len(feature_names)} columns in this order: {_names(feature_names)}"
                )
            rows.append(instance)
        else:
            raise InvalidInputError(
                f"instance {index} must be an object of column values or a list in column order"
            )
    # The common case in one pass through NumPy: every value a number.
    if set(map(type, chain.from_iterable(rows))) <= {int, float}:
        try:
            matrix = np.array(rows, dtype=np.float64)
        except OverflowError:  # an integer too large for a float: the plan names it
            matrix = None
        if matrix is not None:
            return {name: matrix[:, j] for j, name in enumerate(feature_names)}
    return {name: [row[j] for row in rows] for j, name in enumerate(feature_names)}


def _by_name(
    index: int, instance: dict[str, Any], needed: Sequence[str], allowed: set[str]
) -> None:
    missing = [name for name in needed if name not in instance]
    extra = sorted(set(instance) - allowed)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing columns {_names(missing)} (send null for a gap)")
        if extra:
            parts.append(f"unknown columns {_names(extra)}")
        raise InvalidInputError(
            f"instance {index}: {' and '.join(parts)}; the model takes: {_names(needed)}"
        )


def _names(names: Sequence[str], shown: int = 12) -> str:
    quoted = ", ".join(repr(n) for n in names[:shown])
    return quoted + (f", ... ({len(names)} in all)" if len(names) > shown else "")
