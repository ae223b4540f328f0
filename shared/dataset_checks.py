"""What makes a table trainable: finite numbers, a usable target, and enough
rows in every class for the splits. Each check raises a DatasetError naming the column,
value or class; the upload's summary and a job's data preparation run the same ones."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shared.csv_files import is_number
from shared.errors import DatasetError
from shared.settings import DEFAULT_MAX_CLASSES
from shared.spec import DatasetSpec
from shared.vocabulary import Task
from shared.wording import listed, rows_phrase

# A numeric target with more distinct values than this, or any fractional value, is
# taken as a regression target when the spec does not say.
MAX_INFERRED_CLASSES = 20


# What a single-column header holds when the file separates its values otherwise.
_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "pipes (|)", " ": "spaces"}


def infer_task(labels: pd.Series) -> Task:
    """Regression for a numeric target with fractions or many values, else classification."""
    if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return "classification"
    values = labels.to_numpy(dtype=np.float64)
    fractional = bool(np.any(values != np.round(values)))
    return (
        "regression" if fractional or labels.nunique() > MAX_INFERRED_CLASSES else "classification"
    )


@dataclass(frozen=True)
class Usable:
    """A table checked for training: its feature columns, the target of every row that
    has one, the task, and how many rows were left out for having no target."""

    features: pd.DataFrame
    labels: pd.Series
    task: Task
    rows_without_target: int


def usable(
    frame: pd.DataFrame,
    target: str,
    task: Task | None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> Usable:
    """A table checked for training; DatasetError naming the column or value that makes
    it unusable. Rows whose target is a gap are left out (and counted)."""
    if target not in frame.columns:
        raise DatasetError(_missing_target(frame, target))
    has_target = frame[target].notna().to_numpy()
    if not has_target.any():
        raise DatasetError(
            f"target column {target!r} is empty in every row; set dataset.target (or "
            "?target= on upload) to the column to predict"
        )
    kept = frame[has_target].reset_index(drop=True) if not has_target.all() else frame
    labels = kept[target]
    features = kept.drop(columns=[target])
    if features.shape[1] == 0:
        raise DatasetError(
            f"the dataset has no feature columns besides the target {target!r}; "
            "add the columns to learn from"
        )
    _check_finite(features)
    task = task or infer_task(labels)
    _check_target(labels, target, task)
    if task == "classification" and labels.nunique() > max_classes:
        raise DatasetError(
            f"target column {target!r} has {labels.nunique()} classes; a classifier here "
            f"takes at most {max_classes} (TUNEFLEET_MAX_CLASSES). Is the target an id or "
            'a measurement? For a number to predict, use "task": "regression"'
        )
    return Usable(features, labels, task, int((~has_target).sum()))


def _check_finite(features: pd.DataFrame) -> None:
    """DatasetError naming the numeric columns that hold infinity: a gap can be filled
    in, an infinite amount cannot."""
    numeric = [c for c in features.columns if pd.api.types.is_numeric_dtype(features[c])]
    if not numeric:
        return
    infinite = np.isinf(features[numeric].to_numpy(dtype=np.float64))
    bad_rows = int(infinite.any(axis=1).sum())
    if bad_rows:
        described = [
            f"{c} ({rows_phrase(int(infinite[:, i].sum()))})"
            for i, c in enumerate(numeric)
            if infinite[:, i].any()
        ]
        raise DatasetError(
            f"feature columns hold infinite values: {listed(described)} "
            f"({rows_phrase(bad_rows)} in all); replace them with numbers, or leave the cells "
            "empty to have them filled in"
        )


def _missing_target(frame: pd.DataFrame, target: str) -> str:
    """Why ``target`` is not a column, with what the header does hold."""
    names = [str(c) for c in frame.columns]
    message = (
        f"target column {target!r} is not in the dataset (columns: {listed(names)}); "
        "set dataset.target (or ?target= on upload) to the column to predict"
    )
    close = [n for n in names if n.strip().casefold() == target.strip().casefold()]
    if close:
        return f"{message}; did you mean {close[0]!r}?"
    if len(names) == 1:
        # One column is what a file without commas parses to: another separator, or
        # not a table at all.
        separator = next((s for s in _OTHER_SEPARATORS if s in names[0]), None)
        shape = (
            f"its values look separated by {_OTHER_SEPARATORS[separator]}"
            if separator
            else "it has no commas"
        )
        return (
            f"{message}; the file reads as one column because {shape}: a dataset is a CSV "
            "file whose header row names the columns, separated by commas"
        )
    if all(is_number(n) for n in names):
        return f"{message}; the first line holds numbers: add a header row naming the columns"
    return message


def _check_target(labels: pd.Series, target: str, task: Task) -> None:
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(labels):
            raise DatasetError(
                f"target column {target!r} is not numeric, so it cannot be a regression "
                'target; use "task": "classification"'
            )
        infinite = int(np.isinf(labels.to_numpy(dtype=np.float64)).sum())
        if infinite:
            raise DatasetError(
                f"target column {target!r} holds infinite values in {rows_phrase(infinite)}; "
                "drop those rows before uploading"
            )
        if labels.nunique() < 2:
            raise DatasetError(
                f"target column {target!r} holds one value only ({plain(labels.iloc[0])!r}), "
                "so there is nothing to predict; check that the target names the right column"
            )
    elif labels.nunique() < 2:
        raise DatasetError(
            f"target column {target!r} holds one class only ({plain(labels.iloc[0])!r} in "
            f"all {rows_phrase(len(labels))}); a classifier needs at least two: add rows of the "
            "other classes, or check that the target names the right column"
        )


def _split_sizes(rows: int, fraction: float) -> tuple[int, int]:
    """(held out, kept) rows of a split, rounded as train_test_split rounds them."""
    held_out = math.ceil(fraction * rows)
    return held_out, rows - held_out


def check_split(labels: pd.Series, spec: DatasetSpec, stratify: bool) -> None:
    """DatasetError, naming the class or split and what to change, where the two splits
    ``prepare`` makes (test, then validation from the rest) cannot be made."""
    rows = len(labels)
    fractions = (
        f"validation_fraction {spec.validation_fraction} and test_fraction {spec.test_fraction}"
    )

    def sizes(n: int) -> tuple[int, int, int]:
        test, rest = _split_sizes(n, spec.test_fraction)
        validation, training = _split_sizes(rest, validation_share(spec))
        return training, validation, test

    training, validation, test = sizes(rows)
    if training < 1:
        needed = next(n for n in itertools.count(rows + 1) if sizes(n)[0] >= 1)
        raise DatasetError(
            f"the dataset has {rows_phrase(rows)}, too few for training, validation and test rows "
            f"with {fractions}; add rows (at least {needed:,})"
        )
    if not stratify:
        return
    # A stratified split shares each class out in proportion, rounding down first, and
    # needs 2 rows of every class in what it splits. The validation split is taken from
    # the rows left after the test split, so each class must keep 2 rows there for sure.
    rest = rows - test
    least = next(n for n in itertools.count(2) if math.floor(n / rows * rest) >= 2)
    counts = labels.value_counts()
    small = [(c, int(n)) for c, n in counts.items() if math.floor(n / rows * rest) < 2]
    if small:
        fewest_first = sorted(small, key=lambda pair: pair[1])
        described = [f"{plain(c)!r} ({rows_phrase(n)})" for c, n in fewest_first]
        one = len(small) == 1
        raise DatasetError(
            f"too few rows in {'class' if one else 'classes'} {listed(described)} for a "
            f"stratified split: with {fractions}, every class needs enough rows for the "
            f"training, validation and test splits, here at least {least}; add rows of "
            f"{'that class' if one else 'those classes'}, drop {'it' if one else 'them'}, "
            "lower test_fraction, or set dataset.stratify to false"
        )
    for split, size, fix in (
        ("test", test, "raise test_fraction"),
        ("validation", validation, "raise validation_fraction"),
        ("training", training, "lower validation_fraction or test_fraction"),
    ):
        if size < len(counts):
            raise DatasetError(
                f"the {split} split would hold {rows_phrase(size)}, fewer than the {len(counts)} "
                f"classes, so it cannot hold a row of each (with {fractions}); add rows, "
                f"{fix}, or set dataset.stratify to false"
            )


def plain(value: Any) -> Any:
    """A class label as a plain Python value (JSON- and torch.load-safe)."""
    return value.item() if isinstance(value, np.generic) else value


def validation_share(spec: DatasetSpec) -> float:
    """The validation split's share of the rows left once the test rows are set aside."""
    return spec.validation_fraction / (1.0 - spec.test_fraction)
