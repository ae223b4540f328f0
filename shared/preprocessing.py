"""Applying a fitted preprocessing plan: raw columns (numbers, strings, ISO dates, gaps)
in, the network's input matrix out.

A plan is plain data (a dict of lists, strings and numbers: JSON, and loadable with
``torch.load(weights_only=True)``), fitted on a job's training split by
``shared.preprocessing_fit``. This module is the one place that applies it: to the
training, validation and test rows, to /predict's rows, to batch scoring's tables, and,
shipped as source beside an exported model, in a process without tunefleet. So it
imports NumPy and the standard library only.

Per input column, by role:
- numeric: the value as a float; a gap takes the training median (``fill``), and a
  column that had gaps in training adds a 0/1 ``<name>:missing`` column; then scaled,
  either ``x * scale + offset`` or through the training quantiles onto a normal.
- datetime: an ISO 8601 date or datetime becomes year, month, day of week, day of year
  and days since 1970, each then handled as a numeric column (gaps included).
- categorical, one-hot (``encoding`` absent or "one_hot"): one 0/1 column per category
  kept in training, one for every other value (rare in training, or never seen), one for
  a gap.
- categorical, embedded (``encoding`` "embedding", a column with more categories than
  one-hot keeps): one ``<name>:code`` column holding the category's code, 0 for a gap,
  1 for every other value, 2 + its index for a kept category; the network looks the
  code up in a table of learned vectors (``shared.model.CategoryEmbeddings``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

PLAN_FORMAT = 1
DATE_PARTS = ("year", "month", "day_of_week", "day_of_year", "days")
OTHER = "<other>"
MISSING = "<missing>"
# An embedded column's codes: a gap, every other value, then the kept categories.
CODE_MISSING, CODE_OTHER, CODE_FIRST = 0, 1, 2
_EPOCH = dt.datetime(1970, 1, 1)
# Scaled values are capped here: a finite amount far outside the training range (1e308)
# would overflow float32 to infinity, and the network's answer to NaN. The scaled
# training values lie within a few units of 0.
SCALED_CAP = 1e6
# Text that reads as a gap wherever a value is read: what CSV exports write for one.
GAP_MARKERS = frozenset({"", "NA", "N/A", "n/a", "na", "null", "NULL", "NaN", "nan", "?", "-"})


class ValueReadError(ValueError):
    """A value that cannot be read for its column's role; names the row, column, value.

    ``detail`` says what is wrong without the row, for callers that name rows their
    own way (a predict request's instances)."""

    def __init__(self, row: int, column: str, value: Any, role: str) -> None:
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
        if role == "no-gaps":
            self.detail = (
                f"column {column!r} has no value; this model was trained before gaps were "
                "filled in, so send a number"
            )
        else:
            wanted = {
                "numeric": "a finite number",
                "datetime": "an ISO 8601 date or datetime (e.g. '2024-03-01')",
                "categorical": "a category: text, a number or true/false",
            }[role]
            self.detail = (
                f"column {column!r}: {shown} is not {wanted}; send {wanted}, or null for a gap"
            )
        super().__init__(f"row {row}, {self.detail}")
        self.row, self.column, self.value = row, column, value


def category_key(value: Any) -> str | None:
    """A category as the plan keeps it: text as is, whole numbers without ``.0``
    (so that 3, 3.0 and "3" are one category), None for a gap."""
    if value is None:
        return None
    if isinstance(value, str):
        return None if value in GAP_MARKERS else value
    if isinstance(value, bool | np.bool_):
        return "True" if value else "False"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)
    return str(value)


def _category(value: Any, row: int, column: str) -> str | None:
    """category_key of a cell; ValueReadError for a value no table cell can hold (an
    object or a list from JSON)."""
    if isinstance(value, dict | list | tuple | set):
        raise ValueReadError(row, column, value, "categorical")
    return category_key(value)


def read_number(value: Any, row: int, column: str) -> float:
    """A numeric cell as a float; NaN for a gap; ValueReadError for text or infinity."""
    if value is None:
        return math.nan
    if isinstance(value, bool | np.bool_):  # true is not an amount
        raise ValueReadError(row, column, value, "numeric")
    if isinstance(value, int | float | np.integer | np.floating):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        if value.strip() in GAP_MARKERS:
            return math.nan
        try:
            number = float(value)
        except ValueError:
            raise ValueReadError(row, column, value, "numeric") from None
    else:
        raise ValueReadError(row, column, value, "numeric")
    if math.isinf(number):
        raise ValueReadError(row, column, value, "numeric")
    return number


def read_datetime(value: Any, row: int, column: str) -> dt.datetime | None:
    """A date cell as a naive UTC datetime; None for a gap; ValueReadError otherwise."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        value = value.astype("datetime64[us]").item()
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        if text in GAP_MARKERS:
            return None
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueReadError(row, column, value, "datetime") from None
    else:
        raise ValueReadError(row, column, value, "datetime")
    if moment.tzinfo is not None:
        try:
            moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01T00:00+05:00 is before year 1 in UTC
            raise ValueReadError(row, column, value, "datetime") from None
    return moment


def date_parts(values: Sequence[Any], column: str, strict: bool = True) -> np.ndarray:
    """(rows, len(DATE_PARTS)) floats for a date column; NaN rows for gaps. Not
    ``strict``, a cell that is not a date is a gap too (see transform)."""
    parts = np.full((len(values), len(DATE_PARTS)), np.nan)
    for row, value in enumerate(values):
        try:
            moment = read_datetime(value, row, column)
        except ValueReadError:
            if strict:
                raise
            continue
        if moment is None:
            continue
        parts[row] = (
            moment.year,
            moment.month,
            moment.weekday(),
            moment.timetuple().tm_yday,
            (moment - _EPOCH).total_seconds() / 86_400.0,
        )
    return parts


def numbers(values: Any, column: str) -> np.ndarray:
    """A numeric column as float64, NaN for gaps; ValueReadError naming the first bad cell."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        array = values.astype(np.float64)
        if np.isinf(array).any():
            row = int(np.flatnonzero(np.isinf(array))[0])
            raise ValueReadError(row, column, float(array[row]), "numeric")
        return array
    return np.array([read_number(v, row, column) for row, v in enumerate(values)], np.float64)


def identity_plan(feature_names: list[str]) -> dict[str, Any]:
    """The plan of a model trained before plans existed: numbers in, as they are (its
    bundle scales them), and no gaps."""
    part = {"fill": None, "scale": 1.0, "offset": 0.0}
    return {
        "format": PLAN_FORMAT,
        "scaler": "none",
        "columns": [
            {"name": n, "role": "numeric", "indicator": False, "parts": [dict(part)]}
            for n in feature_names
        ],
    }


def output_names(plan: dict[str, Any]) -> list[str]:
    """The network's input columns, in order, as the plan makes them."""
    names: list[str] = []
    for column in plan["columns"]:
        name = column["name"]
        if column["role"] == "categorical" and is_embedded(column):
            names.append(f"{name}:code")
            continue
        if column["role"] == "categorical":
            names += [f"{name}={c}" for c in column["categories"]] + [
                f"{name}={OTHER}",
                f"{name}={MISSING}",
            ]
            continue
        if column["role"] == "datetime":
            names += [f"{name}:{part}" for part in DATE_PARTS]
        else:
            names.append(name)
        if column["indicator"]:
            names.append(f"{name}:missing")
    return names


def is_embedded(column: dict[str, Any]) -> bool:
    """Whether a categorical column of a plan is one code, looked up in learned vectors."""
    return column.get("encoding") == "embedding"


def code_columns(plan: dict[str, Any]) -> list[tuple[int, int]]:
    """(position in output_names, number of codes) of each embedded column, in order."""
    found, position = [], 0
    for column in plan["columns"]:
        width = len(output_names({"columns": [column]}))
        if column["role"] == "categorical" and is_embedded(column):
            found.append((position, CODE_FIRST + len(column["categories"])))
        position += width
    return found


def input_columns(plan: dict[str, Any]) -> list[str]:
    """The raw columns the plan reads, in order."""
    return [column["name"] for column in plan["columns"]]


def transform(plan: dict[str, Any], columns: dict[str, Any], strict: bool = True) -> np.ndarray:
    """The network's input (float32, rows x output_names) from raw columns by name.

    ``columns`` maps every input column to its values: a sequence of raw cells, or a
    NumPy array (floats with NaN for gaps, for numeric columns). Columns the plan does
    not read are not looked at. ValueReadError names a cell that cannot be read. Not
    ``strict`` (a job's own table), a cell of a date column that is not a date is a
    gap: a column is a date when 95% of its cells are, and a stray "n/k" among them
    should not fail the job; a prediction is strict, and such a cell is a 422.
    """
    blocks: list[np.ndarray] = []
    linear: list[dict[str, Any]] = []  # a run of plain numeric columns, encoded as one
    for column in plan["columns"]:
        name, role = column["name"], column["role"]
        if _is_linear(column):
            linear.append(column)
            continue
        if linear:
            blocks.append(_linear_block(linear, columns))
            linear = []
        values = columns[name]
        if role == "categorical":
            blocks.append(_categorical_block(column, values))
            continue
        raw = (
            date_parts(values, name, strict)
            if role == "datetime"
            else numbers(values, name)[:, None]
        )
        blocks.append(_numeric_block(column, raw))
    if linear:
        blocks.append(_linear_block(linear, columns))
    if not blocks:
        return np.zeros((0, 0), np.float32)
    # Written feature by feature into a (features, rows) array, then transposed once:
    # concatenating (rows, 1) blocks side by side writes with a stride per value, ~6x
    # slower (1,000,000 rows of 64 numbers: 3.3 s against 0.56 s).
    rows = len(blocks[0])
    out = np.empty((sum(block.shape[1] for block in blocks), rows), np.float32)
    at = 0
    for block in blocks:
        out[at : at + block.shape[1]] = block.T
        at += block.shape[1]
    return np.ascontiguousarray(out.T)


def _is_linear(column: dict[str, Any]) -> bool:
    """A numeric column scaled as ``x * scale + offset``, without a gap indicator."""
    if column["role"] != "numeric" or column["indicator"] or len(column["parts"]) != 1:
        return False
    return not column["parts"][0].get("quantiles")


def _linear_block(group: list[dict[str, Any]], columns: dict[str, Any]) -> np.ndarray:
    """Consecutive plain numeric columns as one (rows, columns) block: each NumPy pass
    over all of them at once, where a pass per column made a one-row prediction of 64
    numbers ~500 calls. The same values, and the same first bad cell (by column, then
    row; infinity before a gap within a column), as ``_numeric_block`` column by column."""
    names = [column["name"] for column in group]
    parts = [column["parts"][0] for column in group]
    values = [columns[name] for name in names]
    if all(isinstance(v, np.ndarray) and v.dtype.kind in "fiub" for v in values):
        raw = np.stack(values).astype(np.float64, copy=False)
    else:  # cells to read one by one (strings, None): numbers() names a bad one
        read: list[np.ndarray] = []
        for v, name in zip(values, names, strict=True):
            try:
                read.append(numbers(v, name))
            except ValueReadError:
                if read:  # a gap in an earlier column comes first
                    earlier = np.stack(read)
                    _raise_first_bad(earlier, np.isnan(earlier), parts[: len(read)], names)
                raise
        raw = np.stack(read)
    gaps = np.isnan(raw)
    _raise_first_bad(raw, gaps, parts, names)
    if gaps.any():
        fills = np.array([np.nan if part["fill"] is None else part["fill"] for part in parts])
        raw = np.where(gaps, fills[:, None], raw)
    scale = np.array([part["scale"] for part in parts], np.float64)[:, None]
    offset = np.array([part["offset"] for part in parts], np.float64)[:, None]
    out = raw * scale + offset
    # Column by column in memory, as transform writes it; (rows, columns) as a view.
    return np.clip(out, -SCALED_CAP, SCALED_CAP, out=out).T


def _raise_first_bad(
    raw: np.ndarray, gaps: np.ndarray, parts: list[dict[str, Any]], names: list[str]
) -> None:
    """ValueReadError for the first column (then row) of ``raw`` (columns, rows) holding
    infinity or a gap (``gaps``: its NaNs) that its part has no fill for; within a
    column, infinity first."""
    infinite = np.isinf(raw)
    required = np.array([part["fill"] is None for part in parts])[:, None]
    bad = infinite | (gaps & required)
    if not bad.any():
        return
    j = int(np.flatnonzero(bad.any(axis=1))[0])
    if infinite[j].any():
        row = int(np.flatnonzero(infinite[j])[0])
        raise ValueReadError(row, names[j], float(raw[j, row]), "numeric")
    row = int(np.flatnonzero(bad[j])[0])
    raise ValueReadError(row, names[j], None, "no-gaps")


def _numeric_block(column: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    gaps = np.isnan(raw).any(axis=1)
    out = np.empty_like(raw)
    for j, part in enumerate(column["parts"]):
        values = raw[:, j]
        if part["fill"] is None:
            if np.isnan(values).any():
                row = int(np.flatnonzero(np.isnan(values))[0])
                raise ValueReadError(row, column["name"], None, "no-gaps")
        else:
            values = np.where(np.isnan(values), part["fill"], values)
        if part.get("quantiles"):
            # Training quantiles onto a standard normal's (clipped): piecewise linear.
            values = np.interp(values, part["quantiles"], part["normal"])
        else:
            values = values * part["scale"] + part["offset"]
        out[:, j] = np.clip(values, -SCALED_CAP, SCALED_CAP)
    if column["indicator"]:
        out = np.concatenate([out, gaps[:, None].astype(np.float64)], axis=1)
    return out


def _categorical_block(column: dict[str, Any], values: Sequence[Any]) -> np.ndarray:
    """One-hot columns, or an embedded column's codes."""
    categories = column["categories"]
    index = {c: i for i, c in enumerate(categories)}
    other, missing = len(categories), len(categories) + 1
    name = column["name"]
    keys = (_category(value, row, name) for row, value in enumerate(values))
    # Each cell's one-hot column: its category's, "other"'s or "missing"'s.
    positions = np.fromiter(
        (missing if key is None else index.get(key, other) for key in keys),
        dtype=np.int64,
        count=len(values),
    )
    if is_embedded(column):
        codes = np.select(
            [positions == missing, positions == other],
            [CODE_MISSING, CODE_OTHER],
            positions + CODE_FIRST,
        )
        return codes[:, None].astype(np.float64)
    block = np.zeros((len(positions), len(categories) + 2))
    block[np.arange(len(positions)), positions] = 1.0
    return block
