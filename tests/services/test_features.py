"""Predict instances -> feature matrix: the fast path, and errors naming the culprit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.predictor.features import instances_to_matrix
from shared.errors import InvalidInputError

NAMES = ["a", "b", "c"]


def test_rows_by_name_and_in_order_give_the_same_matrix() -> None:
    by_name = instances_to_matrix([{"c": 3, "a": 1.5, "b": -2}, {"a": 0, "b": 0, "c": 1e9}], NAMES)
    in_order = instances_to_matrix([[1.5, -2, 3], [0, 0, 1e9]], NAMES)
    assert by_name.dtype == np.float64
    np.testing.assert_array_equal(by_name, in_order)
    np.testing.assert_array_equal(by_name[0], [1.5, -2.0, 3.0])


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ([], '"instances" is empty'),
        ([{"a": 1, "b": 2}], "instance 0: missing features 'c'"),
        ([{"a": 1, "b": 2, "c": 3, "d": 4}], "unknown features 'd'"),
        ([[1, 2]], "instance 0 has 2 values; the model takes 3 features"),
        ([[1, 2, 3], "x"], "instance 1 must be an object"),
        ([[1, 2, 3], [1, True, 3]], "instance 1, feature 'b': True is not a number"),
        ([[1, 2, "3"]], "instance 0, feature 'c': '3' is not a number"),
        ([[1, None, 3]], "instance 0, feature 'b': None is not a number"),
        ([[1, 2, 3], [1, 2, float("nan")]], "instance 1, feature 'c': nan is not a finite"),
        ([[10**400, 2, 3]], "instance 0, feature 'a': 1000"),
    ],
)
def test_bad_instances_name_the_instance_and_feature(instances: list[Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(")):
        instances_to_matrix(instances, NAMES)
