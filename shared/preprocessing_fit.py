"""Fitting a preprocessing plan on a job's training rows (``shared.preprocessing``
applies it): imputation values, scaling or quantiles, category vocabularies, and the
target's transform. Nothing here looks at validation or test rows."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.special import ndtri

from shared.column_roles import ColumnRole, category_counts
from shared.preprocessing import PLAN_FORMAT, date_parts, numbers

Scaler = Literal["minmax", "standard", "quantile", "none"]
TargetTransform = Literal["none", "log", "auto"]
# A category is kept when seen in at least MIN_CATEGORY_ROWS training rows; the rest
# share "other". A column keeping at most MAX_ONE_HOT is one-hot encoded; one keeping
# more is embedded (learned vectors, see shared.model), its MAX_EMBEDDED most frequent.
MAX_ONE_HOT = 64
MAX_EMBEDDED = 5_000
MIN_CATEGORY_ROWS = 3
# Points of a quantile transform (sklearn's QuantileTransformer takes 1,000). The plan
# rides in every checkpoint as plain floats, 2 x this many per numeric column: 256 keeps
# a 30-column plan near 140 KB, and a piecewise-linear map through 256 quantiles is
# within a quarter of a percentile of the exact one.
QUANTILES = 256
# The normal's tails are cut here, as sklearn cuts them (about +-5.2 standard deviations).
_CLIP = 1e-7
# "auto" learns a target on a log scale when it is never negative and this skewed.
SKEW_FOR_LOG = 1.0


def fit_plan(
    training: pd.DataFrame, roles: dict[str, ColumnRole], scaler: Scaler
) -> dict[str, Any]:
    """A plan for the columns whose role is not ``ignore``, fitted on training rows."""
    columns: list[dict[str, Any]] = []
    for name, role in roles.items():
        if role.role == "ignore":
            continue
        values = training[name].to_numpy()
        if role.role == "categorical":
            columns.append(_categorical(name, training[name]))
            continue
        raw = (
            date_parts(values, name, strict=False)
            if role.role == "datetime"
            else numbers(values, name)[:, None]
        )
        columns.append(
            {
                "name": name,
                "role": role.role,
                "indicator": bool(np.isnan(raw).any()),
                "parts": [_numeric_part(raw[:, j], scaler) for j in range(raw.shape[1])],
            }
        )
    return {"format": PLAN_FORMAT, "scaler": scaler, "columns": columns}


def _numeric_part(values: np.ndarray, scaler: Scaler) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    if present.size == 0:  # every training value missing: the column says only "missing"
        return {"fill": 0.0, "scale": 0.0, "offset": 0.0}
    fill = float(np.median(present))
    if scaler == "quantile":
        return {"fill": fill, **_quantiles(present)}
    scale, offset = 1.0, 0.0
    if scaler == "minmax":
        low, high = float(present.min()), float(present.max())
        scale = 1.0 / (high - low) if high > low else 1.0
        offset = -low * scale
    elif scaler == "standard":
        mean, std = float(present.mean()), float(present.std())
        scale = 1.0 / std if std > 0 else 1.0
        offset = -mean * scale
    return {"fill": fill, "scale": scale, "offset": offset}


def _quantiles(present: np.ndarray) -> dict[str, Any]:
    """A quantile-normal transform as interpolation points: each distinct training
    quantile and the normal's value at its (mean) rank."""
    ranks = np.linspace(0.0, 1.0, min(QUANTILES, present.size))
    quantiles = np.quantile(present, ranks)
    distinct, group = np.unique(quantiles, return_inverse=True)
    mean_rank = np.bincount(group, weights=ranks) / np.bincount(group)
    normal = ndtri(np.clip(mean_rank, _CLIP, 1.0 - _CLIP))
    if distinct.size == 1:
        normal = np.zeros(1)
    return {"quantiles": distinct.tolist(), "normal": normal.tolist()}


def _categorical(name: str, column: pd.Series) -> dict[str, Any]:
    counts = category_counts(column)
    counts = counts[counts >= MIN_CATEGORY_ROWS]
    # Most frequent first, ties by name: the same plan from the same rows.
    ordered = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    if len(ordered) <= MAX_ONE_HOT:
        return {"name": name, "role": "categorical", "categories": [c for c, _ in ordered]}
    return {
        "name": name,
        "role": "categorical",
        "encoding": "embedding",
        "categories": [c for c, _ in ordered[:MAX_EMBEDDED]],
    }


def fit_target(y_train: np.ndarray, transform: TargetTransform) -> dict[str, Any]:
    """How a regression target is learned: on a log scale (``log1p``) or as it is, then
    standardised with the training rows' mean and standard deviation."""
    use_log = transform == "log" or (
        transform == "auto"
        and float(y_train.min()) >= 0
        and float(pd.Series(y_train).skew()) > SKEW_FOR_LOG
    )
    learned = np.log1p(y_train) if use_log else y_train
    return {
        "transform": "log" if use_log else "none",
        "mean": float(learned.mean()),
        "std": float(learned.std()) or 1.0,
    }
