"""What each column of a table is to the network: numeric, categorical, a date, or
ignored, with the reason. Inferred at upload (and shown in the dataset's summary) and
again when a job prepares the data, where the job spec's ``columns`` may override it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.errors import DatasetError
from shared.preprocessing import category_key
from shared.vocabulary import Role
from shared.wording import listed

# A table needs this many rows before a column unique in every row is taken for an id.
MIN_ROWS_FOR_ID = 20
# An integer column named as codes are named (zip, type, status, ...) with at most this
# many distinct values holds categories, not amounts. Other integer columns are amounts:
# pixel intensities, counts and ratings order their values.
MAX_CODES = 50
# A text column whose values read as dates in at least this share of its cells is a date.
DATE_SHARE = 0.95
_BOOLEAN_WORDS = frozenset({"yes", "no", "y", "n", "true", "false", "t", "f"})
_ID_NAME = re.compile(
    r"(^|[_\s.-])(id|uuid|guid|key|index)$|^(id|uuid)[_\s.-]"
    r"|^row_?(num(ber)?|names?)?$|^unnamed: 0$"
)
_CODE_NAME = re.compile(r"(code|type|class|category|kind|group|zip|postal|status|region)s?$")
_DATE_LIKE = re.compile(
    r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$"
)


@dataclass(frozen=True)
class ColumnRole:
    """A column's role, and why (for an ignored or inferred-categorical column)."""

    role: Role
    reason: str = ""


def infer_roles(features: pd.DataFrame) -> dict[str, ColumnRole]:
    """Every feature column's role, read from its values."""
    return {str(name): infer_role(features[name], str(name)) for name in features.columns}


def infer_role(column: pd.Series, name: str) -> ColumnRole:
    present = column.dropna()
    if present.empty:
        return ColumnRole("ignore", "every value is missing")
    distinct = present.nunique()
    if distinct == 1 and len(present) == len(column):
        return ColumnRole("ignore", f"one value only ({_shown(present.iloc[0])})")
    unique_per_row = distinct == len(column) and len(column) >= MIN_ROWS_FOR_ID
    if pd.api.types.is_bool_dtype(column):
        return ColumnRole("categorical", "true/false")
    if pd.api.types.is_numeric_dtype(column):
        return _numeric_role(present, name, unique_per_row)
    if pd.api.types.is_datetime64_any_dtype(column):
        return ColumnRole("datetime")
    text = present.astype(str)
    if _looks_like_dates(text):
        return ColumnRole("datetime")
    if unique_per_row:
        return ColumnRole("ignore", "an identifier: a different value in every row")
    if set(text.str.strip().str.lower().unique()) <= _BOOLEAN_WORDS:
        return ColumnRole("categorical", "yes/no")
    return ColumnRole("categorical", "text")


def _numeric_role(present: pd.Series, name: str, unique_per_row: bool) -> ColumnRole:
    values = present.to_numpy(dtype=np.float64)
    whole = bool(np.all(values == np.round(values)))
    lowered = name.strip().lower()
    if whole and unique_per_row and _ID_NAME.search(lowered):
        return ColumnRole("ignore", "an identifier: a different value in every row")
    distinct = len(np.unique(values))
    if whole and 2 < distinct <= MAX_CODES and _CODE_NAME.search(lowered):
        return ColumnRole("categorical", f"{distinct} integer codes")
    return ColumnRole("numeric")


def _looks_like_dates(text: pd.Series) -> bool:
    sample = text.head(1000)
    shaped = sample.str.strip().str.fullmatch(_DATE_LIKE)
    if shaped.mean() < DATE_SHARE:
        return False
    parsed = pd.to_datetime(sample[shaped], errors="coerce", format="ISO8601", utc=True)
    return bool(parsed.notna().mean() >= DATE_SHARE)


def apply_overrides(
    roles: dict[str, ColumnRole], overrides: Mapping[str, Role], features: pd.DataFrame
) -> dict[str, ColumnRole]:
    """The inferred roles with a job spec's ``columns`` applied; DatasetError naming a
    column that is not a feature, or whose values cannot take the role asked for."""
    check_override_names(overrides, list(roles), "the dataset")
    merged = dict(roles)
    for name, role in overrides.items():
        column = features[name]
        if role == "numeric" and not pd.api.types.is_numeric_dtype(column):
            bad = _first(column, pd.to_numeric(column, errors="coerce").isna() & column.notna())
            if bad is not None:
                raise DatasetError(
                    f"dataset.columns makes {name!r} numeric, but it holds text (e.g. "
                    f"{bad!r}); make it categorical, or leave it to be inferred"
                )
        if role == "datetime" and not pd.api.types.is_datetime64_any_dtype(column):
            parsed = pd.to_datetime(column, errors="coerce", format="ISO8601", utc=True)
            bad = _first(column, parsed.isna() & column.notna())
            if bad is not None:
                raise DatasetError(
                    f"dataset.columns makes {name!r} a datetime, but {bad!r} is not an ISO "
                    "8601 date (e.g. 2024-03-01 or 2024-03-01T12:30:00); make it "
                    "categorical, or leave it to be inferred"
                )
        merged[name] = ColumnRole(role, "set by the job spec")
    return merged


def check_override_names(overrides: Mapping[str, Role], features: list[str], of: str) -> None:
    """DatasetError naming the columns of a spec's ``columns`` that are not features of
    ``of`` (the dataset), and the features there are."""
    unknown = [name for name in overrides if name not in features]
    if unknown:
        raise DatasetError(
            f"dataset.columns names {listed([repr(n) for n in unknown])}, which "
            f"{'is not a feature column' if len(unknown) == 1 else 'are not feature columns'}"
            f" of {of} (its features: {listed([repr(n) for n in features])}); "
            "fix the name or leave it out"
        )


def category_counts(column: pd.Series) -> pd.Series:
    """How often each category occurs (gaps left out), the most frequent first."""
    keys = pd.Series([category_key(v) for v in column.to_numpy()], dtype=object)
    return keys.dropna().value_counts()


def _first(column: pd.Series, mask: pd.Series) -> object | None:
    offending = column[mask]
    return offending.iloc[0] if len(offending) else None


def _shown(value: object) -> str:
    shown = repr(value.item() if isinstance(value, np.generic) else value)
    return shown if len(shown) <= 30 else f"{shown[:27]}..."
