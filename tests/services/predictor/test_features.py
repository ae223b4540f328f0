"""Predict instances -> raw columns -> the plan's matrix: the fast path, and errors that
name the instance and the column."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.predictor.features import instances_to_columns
from shared.errors import InvalidInputError
from shared.preprocessing import ValueReadError, identity_plan, transform

NAMES = ["a", "b", "c"]
NUMERIC = dict.fromkeys(NAMES, "numeric")


def test_rows_by_name_and_in_order_give_the_same_columns() -> None:
    by_name = instances_to_columns(
        [{"c": 3, "a": 1.5, "b": -2}, {"a": 0, "b": 0, "c": 1e9}], NAMES, NUMERIC
    )
    in_order = instances_to_columns([[1.5, -2, 3], [0, 0, 1e9]], NAMES, NUMERIC)
    assert by_name["a"].dtype == np.float64
    for name in NAMES:
        np.testing.assert_array_equal(by_name[name], in_order[name])
    np.testing.assert_array_equal(by_name["c"], [3.0, 1e9])


def test_a_column_the_model_ignores_may_be_left_out_or_sent() -> None:
    roles = {"a": "numeric", "b": "ignore", "c": "categorical"}
    left_out = instances_to_columns([{"a": 1, "c": "x"}], NAMES, roles)
    sent = instances_to_columns([{"a": 1, "b": "anything", "c": "x"}], NAMES, roles)
    assert left_out["c"] == sent["c"] == ["x"]


@pytest.mark.parametrize(
    ("instances", "message"),
    [
        ([], '"instances" is empty'),
        ([{"a": 1, "b": 2}], "instance 0: missing columns 'c' (send null for a gap)"),
        ([{"a": 1, "b": 2, "c": 3, "d": 4}], "unknown columns 'd'"),
        ([[1, 2]], "instance 0 has 2 values; the model takes 3 columns"),
        ([[1, 2, 3], "x"], "instance 1 must be an object"),
    ],
)
def test_bad_instances_name_the_instance(instances: list[Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        instances_to_columns(instances, NAMES, NUMERIC)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, 2, 3], [1, True, 3]], "row 1, column 'b': True is not a finite number"),
        ([[1, 2, "three"]], "row 0, column 'c': 'three' is not a finite number"),
        ([[1, 2, 3], [1, 2, float("inf")]], "row 1, column 'c': inf is not a finite number"),
        ([[10**400, 2, 3]], "row 0, column 'a': 1000"),
        ([[1, None, 3]], "row 0, column 'b' has no value; this model was trained before gaps"),
        # Several bad cells: the first column's first, then its first row's.
        ([[1, 2, float("inf")], [1, None, 3]], "row 1, column 'b' has no value"),
        ([[1, 2, float("inf")], [1, float("inf"), 3]], "row 1, column 'b': inf"),
        ([[1, None, 3], [1, float("inf"), 3]], "row 1, column 'b': inf"),
        ([[1, None, "x"], [None, 2, 3]], "row 1, column 'a' has no value"),
    ],
)
def test_cells_a_plain_numeric_model_cannot_read_are_named(
    rows: list[list[Any]], message: str
) -> None:
    columns = instances_to_columns(rows, NAMES, NUMERIC)
    with pytest.raises(ValueReadError, match=message):
        transform(identity_plan(NAMES), columns)


def test_numeric_strings_read_as_numbers() -> None:
    columns = instances_to_columns([[1, "2.5", 3]], NAMES, NUMERIC)
    np.testing.assert_array_equal(transform(identity_plan(NAMES), columns), [[1, 2.5, 3]])


def test_the_target_column_may_come_along_and_is_not_read() -> None:
    rows = [{"a": 1, "b": 2, "c": 3, "label": "yes"}]
    columns = instances_to_columns(rows, NAMES, NUMERIC, target="label")
    assert set(columns) == set(NAMES)
    with pytest.raises(InvalidInputError, match="unknown columns 'label'"):
        instances_to_columns(rows, NAMES, NUMERIC)
