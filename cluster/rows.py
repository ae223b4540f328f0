"""Table rows as /predict takes them: JSON values, null for a gap, ISO text for a date."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row as ``{column: value}``: NaN, NaT and None become null (a gap, never the
    invalid JSON NaN), timestamps ISO 8601 text, NumPy scalars plain Python values."""
    return [
        {name: _plain(value) for name, value in row.items()} for row in frame.to_dict("records")
    ]


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, str | bytes) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return value
