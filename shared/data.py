"""Datasets: where they come from, what makes one usable, and how it is split and scaled.

A dataset is a table with numeric feature columns and one target column: the class of
each row (classification) or a number (regression). Built-in datasets ship with
scikit-learn; uploaded ones are CSV files kept under the storage root by content hash.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet
from pydantic import BaseModel, Field, ValidationError
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from shared.errors import DatasetError, NotFoundError
from shared.prepared import PreparedData
from shared.quotas import ensure_room
from shared.spec import DatasetSpec
from shared.storage import StoragePath, storage_path
from shared.vocabulary import DATASET_ID_PATTERN, Subject, Task

DEFAULT_TARGET = "target"
# Rows per row group of an upload's Parquet copy: a scorer's batches are cut from these.
PARQUET_ROW_GROUP_ROWS = 65_536
# The Parquet copy's column of row numbers (0, 1, ...): Ray Data may hand a batch job's
# blocks on out of order, and its output is put back in order by it.
ROW_COLUMN = "__tunefleet_row"
# A column's type in a dataset's summary; feature columns are never text.
ColumnType = Literal["integer", "float", "boolean", "text"]
# training: a table with a target to tune on; scoring: rows for a model to score in a
# batch job (POST /models/{id}/batch), with no target needed and any other columns.
Purpose = Literal["training", "scoring"]
# A numeric target with more distinct values than this, or any fractional value, is
# taken as a regression target when the spec does not say.
MAX_INFERRED_CLASSES = 20
# Columns, classes or values named in one error message; past this they are counted.
MAX_NAMED = 10
# What a single-column header holds when the file separates its values otherwise.
_OTHER_SEPARATORS = {";": "semicolons", "\t": "tabs", "|": "pipes (|)", " ": "spaces"}
# Formats people upload by mistake, known by their first bytes: (magic, what it is, fix).
_NOT_CSV_SIGNATURES = (
    (
        b"PK\x03\x04",
        "a ZIP archive (an Excel .xlsx workbook is one)",
        "unzip it, or export the sheet as CSV",
    ),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls workbook", "export the sheet as CSV"),
    (b"\x1f\x8b", "gzip-compressed", "decompress it (gunzip) and upload the CSV inside"),
    (b"PAR1", "a Parquet file", "write it out with DataFrame.to_csv(path, index=False)"),
    (b"\xff\xfe", "UTF-16 text", "save it as UTF-8 CSV"),
    (b"\xfe\xff", "UTF-16 text", "save it as UTF-8 CSV"),
)
_BUILTIN_LOADERS = {
    "breast_cancer": sk_datasets.load_breast_cancer,
    "digits": sk_datasets.load_digits,
    "wine": sk_datasets.load_wine,
    "iris": sk_datasets.load_iris,
    "diabetes": sk_datasets.load_diabetes,
}


class DatasetSummary(BaseModel):
    """What POST /datasets answers: enough to write a job spec against the dataset."""

    id: str
    rows: int
    columns: list[str] = Field(description="The feature columns; for scoring, every column.")
    target: str | None = Field(description="The column to predict; null for scoring.")
    task: Task | None = Field(description="null for scoring.")
    purpose: Purpose = "training"
    classes: list[Any] = Field(
        default_factory=list, description="Class labels (classification); empty otherwise."
    )
    class_counts: dict[str, int] = Field(default_factory=dict)
    column_types: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="Every column's type as read from the CSV, the target's included.",
    )
    problems: list[str] = Field(
        default_factory=list,
        description="What the checks found that would fail a job with the default splits "
        "(validation_fraction, test_fraction, stratify), and what to change.",
    )


class DatasetStore:
    """Uploaded CSV files under ``<storage>/datasets``, named by content hash."""

    def __init__(self, root: PurePath | StoragePath) -> None:
        self._root = storage_path(root)

    def save(
        self,
        content: bytes,
        target: str = DEFAULT_TARGET,
        *,
        max_rows: int | None = None,
        max_columns: int | None = None,
        quota_bytes: int = 0,
        purpose: Purpose = "training",
    ) -> DatasetSummary:
        """Check an uploaded CSV, keep it, and summarise it. DatasetError if unusable or
        larger than ``max_rows`` rows or ``max_columns`` columns (target included);
        PayloadTooLargeError if keeping it would take the folder past ``quota_bytes``
        (0: no quota). A table to score is checked as a CSV only: no target, and
        columns of any type (the batch job checks the model's features)."""
        named = target if purpose == "training" else "\0scoring"
        dataset_id = hashlib.sha256(content + b"\0" + named.encode()).hexdigest()[:32]
        # Before parsing: refusing a large file should not cost reading it. The same
        # upload again replaces its own files and needs no room.
        known = (self._root / f"{dataset_id}.csv").is_file()
        ensure_room(
            used_bytes=self.used_bytes() if quota_bytes else 0,
            adding_bytes=0 if known else len(content),
            quota_bytes=quota_bytes,
            what="datasets",
            setting="TUNEFLEET_MAX_DATASET_BYTES_PER_TENANT",
            fix="delete datasets it no longer needs",
            subject=Subject.DATASET,
        )
        frame = read_csv_bytes(content, max_rows=max_rows, max_columns=max_columns)
        if purpose == "scoring":
            summary = summarize_for_scoring(frame, dataset_id)
        else:
            summary = summarize(frame, target, dataset_id)
        self._root.mkdir(parents=True, exist_ok=True)
        # The tables before the summary: a dataset is found by its summary.
        (self._root / f"{dataset_id}.csv").write_bytes(content)
        columnar = self._root / f"{dataset_id}.parquet"
        copy = parquet_copy(frame)
        if copy is not None:
            columnar.write_bytes(copy)
        else:
            columnar.unlink(missing_ok=True)
        (self._root / f"{dataset_id}.json").write_bytes(summary.model_dump_json().encode())
        return summary

    def summary(self, dataset_id: str) -> DatasetSummary:
        try:
            saved = (self._root / f"{dataset_id}.json").read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise NotFoundError.no(Subject.DATASET, dataset_id) from None
        return DatasetSummary.model_validate_json(saved)

    def load(
        self, dataset_id: str, *, max_rows: int | None = None, max_columns: int | None = None
    ) -> pd.DataFrame:
        """An upload as a table, checked again as on upload (the limits may have changed)."""
        self.summary(dataset_id)
        content = (self._root / f"{dataset_id}.csv").read_bytes()
        return read_csv_bytes(content, max_rows=max_rows, max_columns=max_columns)

    def table(self, dataset_id: str) -> tuple[StoragePath, Literal["parquet", "csv"]]:
        """Where an upload's table lies for readers that stream it (Ray Data), and its
        format: its Parquet copy (see parquet_copy), else the CSV itself (an upload kept
        before copies were made, or one that would not convert);
        NotFoundError if there is no such upload."""
        self.summary(dataset_id)
        columnar = self._root / f"{dataset_id}.parquet"
        if columnar.is_file():
            return columnar, "parquet"
        return self._root / f"{dataset_id}.csv", "csv"

    def summaries(self) -> list[DatasetSummary]:
        """Every dataset kept here, the most recently uploaded first."""
        found: list[tuple[float, DatasetSummary]] = []
        for entry in self._root.entries():
            stem, suffix = os.path.splitext(entry.name)
            if entry.is_dir or suffix != ".json" or not re.fullmatch(DATASET_ID_PATTERN, stem):
                continue
            try:
                found.append(
                    (entry.mtime, DatasetSummary.model_validate_json(entry.path.read_bytes()))
                )
            except (FileNotFoundError, ValidationError):
                # Deleted meanwhile, or unreadable: one bad file must not hide the others.
                continue
        return [summary for _, summary in sorted(found, key=lambda pair: -pair[0])]

    def delete(self, dataset_id: str) -> None:
        """Remove a dataset's file and summary; NotFoundError if there is none."""
        self.summary(dataset_id)
        # The summary first: from then on the dataset is not found, and no new job can
        # name it while its table goes.
        for suffix in (".json", ".csv", ".parquet"):
            (self._root / f"{dataset_id}{suffix}").unlink(missing_ok=True)

    def used_bytes(self) -> int:
        """Bytes of the uploads and summaries kept here. Only this folder's own files: the default
        tenant's folder holds the other tenants' folders (see shared.auth.tenant_folder)."""
        # The Parquet copies are derived (see parquet_copy): the quota counts the uploads.
        return sum(
            e.size
            for e in self._root.entries()
            if not (e.is_dir or e.is_symlink or e.name.endswith(".parquet"))
        )


def parquet_copy(frame: pd.DataFrame) -> bytes | None:
    """An upload as Parquet, for batch jobs: Ray Data reads a CSV file as one task and
    parses it there, a Parquet file in row groups at a fraction of the cost (1,000,000
    digits rows: 2.6 s against 0.4 s here). Made from the table as the upload's check
    read it (the same column types and values), with ROW_COLUMN numbering the rows; None
    if a column will not convert or is named so, and the CSV is read instead."""
    if ROW_COLUMN in frame.columns:
        return None
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.append_column(ROW_COLUMN, pa.array(np.arange(len(frame), dtype=np.int64)))
    except (pa.ArrowException, ValueError, TypeError):
        return None
    sink = pa.BufferOutputStream()
    pyarrow.parquet.write_table(table, sink, row_group_size=PARQUET_ROW_GROUP_ROWS)
    return bytes(sink.getvalue())


def read_csv_bytes(
    content: bytes, *, max_rows: int | None = None, max_columns: int | None = None
) -> pd.DataFrame:
    """Parse a CSV file with a header row, or say why it is not one or is too large.

    Every parser failure becomes a DatasetError: the bytes come from users.
    """
    buffer = io.StringIO(_csv_text(content))
    header = _header(buffer)
    _check_limit(len(header), max_columns, "columns", "TUNEFLEET_MAX_DATASET_COLUMNS")
    buffer.seek(0)
    try:
        frame = pd.read_csv(buffer)
    except (ValueError, OverflowError, csv.Error) as exc:  # pandas' parser errors are ValueErrors
        raise DatasetError(
            f"the file is not a readable CSV file ({str(exc).strip()}); check that every row "
            "has one comma-separated value per header column, and quote values holding commas"
        ) from exc
    if frame.empty:
        raise DatasetError("the CSV file has a header but no rows; add data rows below it")
    _check_limit(len(frame), max_rows, "rows", "TUNEFLEET_MAX_DATASET_ROWS")
    return frame


def load_frame(
    spec: DatasetSpec,
    store: DatasetStore,
    *,
    max_rows: int | None = None,
    max_columns: int | None = None,
) -> pd.DataFrame:
    """The dataset a spec names, as a table; the limits apply to uploads only."""
    if spec.builtin is not None:
        return _BUILTIN_LOADERS[spec.builtin](as_frame=True).frame
    assert spec.upload is not None  # the spec validates that one source is set
    return store.load(spec.upload, max_rows=max_rows, max_columns=max_columns)


def target_of(spec: DatasetSpec, store: DatasetStore) -> str:
    """The target column: the spec's, else the one the upload was summarised with.
    NotFoundError for an unknown upload, DatasetError for one uploaded to be scored."""
    if spec.upload is not None:
        summary = store.summary(spec.upload)
        if summary.purpose == "scoring":
            raise DatasetError(
                f"dataset {spec.upload} was uploaded to be scored (purpose=scoring), not to "
                "train on; upload it again with ?target=COLUMN to tune on it"
            )
        return spec.target or summary.target or DEFAULT_TARGET
    return spec.target or DEFAULT_TARGET


def summarize(
    frame: pd.DataFrame, target: str, dataset_id: str, task: Task | None = None
) -> DatasetSummary:
    """Check that a table can be trained on and describe it."""
    features, labels, task = _usable(frame, target, task)
    summary = DatasetSummary(
        id=dataset_id,
        rows=len(frame),
        columns=list(features.columns),
        target=target,
        task=task,
        column_types={str(name): _column_type(frame[name]) for name in frame.columns},
    )
    if task == "classification":
        counts = labels.value_counts().sort_index()
        summary.classes = [_plain(c) for c in counts.index]
        summary.class_counts = {str(_plain(c)): int(n) for c, n in counts.items()}
    # The splits are checked when a job prepares the data; checked here too, with the
    # defaults, an upload that no default job could train on says so before a job fails.
    # model_construct: the defaults only, without naming a source.
    defaults = DatasetSpec.model_construct()
    try:
        _check_split(labels, defaults, defaults.stratify and task == "classification")
    except DatasetError as exc:
        summary.problems.append(str(exc))
    return summary


def summarize_for_scoring(frame: pd.DataFrame, dataset_id: str) -> DatasetSummary:
    """Describe a table that a model is to score: its columns and their types."""
    return DatasetSummary(
        id=dataset_id,
        rows=len(frame),
        columns=[str(name) for name in frame.columns],
        target=None,
        task=None,
        purpose="scoring",
        column_types={str(name): _column_type(frame[name]) for name in frame.columns},
    )


def _column_type(column: pd.Series) -> ColumnType:
    if pd.api.types.is_bool_dtype(column):
        return "boolean"
    if pd.api.types.is_integer_dtype(column):
        return "integer"
    if pd.api.types.is_float_dtype(column):
        return "float"
    return "text"


def infer_task(labels: pd.Series) -> Task:
    """Regression for a numeric target with fractions or many values, else classification."""
    if not pd.api.types.is_numeric_dtype(labels) or pd.api.types.is_bool_dtype(labels):
        return "classification"
    values = labels.to_numpy(dtype=np.float64)
    fractional = bool(np.any(values != np.round(values)))
    return (
        "regression" if fractional or labels.nunique() > MAX_INFERRED_CLASSES else "classification"
    )


def prepare(
    frame: pd.DataFrame, spec: DatasetSpec, target: str, task: Task | None = None
) -> PreparedData:
    """Split (stratified for classes), encode the target, fit the scaler on training rows."""
    features, labels, task = _usable(frame, target, task)
    stratify = spec.stratify and task == "classification"
    _check_split(labels, spec, stratify)
    x = features.to_numpy(dtype=np.float32)
    classes: list[Any] = []
    if task == "classification":
        classes = sorted(labels.unique().tolist())
        y = labels.map({c: i for i, c in enumerate(classes)}).to_numpy(dtype=np.int64)
    else:
        y = labels.to_numpy(dtype=np.float32)
    x_rest, x_test, y_rest, y_test = _split(x, y, spec.test_fraction, spec.seed, stratify)
    x_train, x_val, y_train, y_val = _split(
        x_rest, y_rest, _validation_share(spec), spec.seed, stratify
    )
    scale, offset = _fit_scaler(spec.scaler, x_train)
    target_mean, target_std = 0.0, 1.0
    if task == "regression":
        target_mean, target_std = float(y_train.mean()), float(y_train.std()) or 1.0
        y_train, y_val, y_test = (
            ((part - target_mean) / target_std).astype(np.float32)
            for part in (y_train, y_val, y_test)
        )

    def scaled(values: np.ndarray) -> np.ndarray:
        return (values * scale + offset).astype(np.float32)

    return PreparedData(
        task=task,
        feature_names=list(features.columns),
        classes=[_plain(c) for c in classes],
        target_mean=target_mean,
        target_std=target_std,
        scale=scale,
        offset=offset,
        x_train=scaled(x_train),
        y_train=y_train,
        x_val=scaled(x_val),
        y_val=y_val,
        x_test=scaled(x_test),
        y_test=y_test,
    )


def _usable(
    frame: pd.DataFrame, target: str, task: Task | None
) -> tuple[pd.DataFrame, pd.Series, Task]:
    """(features, target column, task) of a table checked for training; DatasetError
    naming the column or value that makes it unusable."""
    features, labels = _features_and_labels(frame, target)
    task = task or infer_task(labels)
    _check_target(labels, target, task)
    return features, labels, task


def _features_and_labels(frame: pd.DataFrame, target: str) -> tuple[pd.DataFrame, pd.Series]:
    if target not in frame.columns:
        raise DatasetError(_missing_target(frame, target))
    labels = frame[target]
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise DatasetError(
            f"the dataset has no feature columns besides the target {target!r}; "
            "add the numeric columns to learn from"
        )
    non_numeric = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    if non_numeric:
        described = [_with_example(str(c), _first_non_number(features[c])) for c in non_numeric]
        raise DatasetError(
            f"feature columns must be numeric; these are not: {_listed(described)}; encode "
            "them as numbers before uploading (one-hot: one 0/1 column per category, e.g. "
            "with pandas.get_dummies) or drop them"
        )
    values = features.to_numpy(dtype=np.float64)
    missing, infinite = np.isnan(values), np.isinf(values)
    bad_rows = int((missing | infinite).any(axis=1).sum())
    if bad_rows:
        described = [
            _non_finite(str(c), int(missing[:, i].sum()), int(infinite[:, i].sum()))
            for i, c in enumerate(features.columns)
            if missing[:, i].any() or infinite[:, i].any()
        ]
        raise DatasetError(
            f"feature columns hold missing (NaN) or infinite values: {_listed(described)} "
            f"({_rows(bad_rows)} in all); fill in or drop those rows before uploading"
        )
    if labels.isna().any():
        raise DatasetError(
            f"target column {target!r} is empty in {_rows(int(labels.isna().sum()))}; "
            "fill in or drop those rows before uploading"
        )
    return features, labels


def _missing_target(frame: pd.DataFrame, target: str) -> str:
    """Why ``target`` is not a column, with what the header does hold."""
    names = [str(c) for c in frame.columns]
    message = (
        f"target column {target!r} is not in the dataset (columns: {_listed(names)}); "
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
    if all(_is_number(n) for n in names):
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
                f"target column {target!r} holds infinite values in {_rows(infinite)}; "
                "drop those rows before uploading"
            )
        if labels.nunique() < 2:
            raise DatasetError(
                f"target column {target!r} holds one value only ({_plain(labels.iloc[0])!r}), "
                "so there is nothing to predict; check that the target names the right column"
            )
    elif labels.nunique() < 2:
        raise DatasetError(
            f"target column {target!r} holds one class only ({_plain(labels.iloc[0])!r} in "
            f"all {_rows(len(labels))}); a classifier needs at least two: add rows of the "
            "other classes, or check that the target names the right column"
        )


def _validation_share(spec: DatasetSpec) -> float:
    """The validation split's share of the rows left once the test rows are set aside."""
    return spec.validation_fraction / (1.0 - spec.test_fraction)


def _split_sizes(rows: int, fraction: float) -> tuple[int, int]:
    """(held out, kept) rows of a split, rounded as train_test_split rounds them."""
    held_out = math.ceil(fraction * rows)
    return held_out, rows - held_out


def _check_split(labels: pd.Series, spec: DatasetSpec, stratify: bool) -> None:
    """DatasetError, naming the class or split and what to change, where the two splits
    ``prepare`` makes (test, then validation from the rest) cannot be made."""
    rows = len(labels)
    fractions = (
        f"validation_fraction {spec.validation_fraction} and test_fraction {spec.test_fraction}"
    )

    def sizes(n: int) -> tuple[int, int, int]:
        test, rest = _split_sizes(n, spec.test_fraction)
        validation, training = _split_sizes(rest, _validation_share(spec))
        return training, validation, test

    training, validation, test = sizes(rows)
    if training < 1:
        needed = next(n for n in itertools.count(rows + 1) if sizes(n)[0] >= 1)
        raise DatasetError(
            f"the dataset has {_rows(rows)}, too few for training, validation and test rows "
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
        described = [f"{_plain(c)!r} ({_rows(n)})" for c, n in sorted(small, key=lambda p: p[1])]
        one = len(small) == 1
        raise DatasetError(
            f"too few rows in {'class' if one else 'classes'} {_listed(described)} for a "
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
                f"the {split} split would hold {_rows(size)}, fewer than the {len(counts)} "
                f"classes, so it cannot hold a row of each (with {fractions}); add rows, "
                f"{fix}, or set dataset.stratify to false"
            )


def _split(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int, stratify: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        parts = train_test_split(
            x, y, test_size=fraction, stratify=y if stratify else None, random_state=seed
        )
    except ValueError as exc:
        # _check_split rules out the failures known to it; this names any other.
        raise DatasetError(
            f"cannot split the dataset ({exc}); every class needs enough rows for the "
            "training, validation and test splits: add rows or drop rare classes"
        ) from exc
    x_a, x_b, y_a, y_b = parts
    return x_a, x_b, y_a, y_b


def _fit_scaler(kind: str, x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale, offset) with which ``x * scale + offset`` applies the fitted scaler."""
    n_features = x_train.shape[1]
    if kind == "minmax":
        minmax = MinMaxScaler().fit(x_train)
        scale, offset = minmax.scale_, minmax.min_
    elif kind == "standard":
        standard = StandardScaler().fit(x_train)
        scale, offset = 1.0 / standard.scale_, -standard.mean_ / standard.scale_
    else:
        scale, offset = np.ones(n_features), np.zeros(n_features)
    return np.asarray(scale, dtype=np.float32), np.asarray(offset, dtype=np.float32)


def _plain(value: Any) -> Any:
    """A class label as a plain Python value (JSON- and torch.load-safe)."""
    return value.item() if isinstance(value, np.generic) else value


def _csv_text(content: bytes) -> str:
    """The file as text, or DatasetError saying what else it is."""
    if not content.strip():
        raise DatasetError("the file is empty; send a CSV file with a header row")
    for magic, what, fix in _NOT_CSV_SIGNATURES:
        if content.startswith(magic):
            raise DatasetError(f"the file is {what}, not a CSV file; {fix}")
    if b"\0" in content:
        raise DatasetError(
            "the file holds binary data (NUL bytes), not CSV text; send a CSV file: "
            "comma-separated values with a header row"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"the file is not UTF-8 text (byte 0x{content[exc.start]:02x} at offset "
            f"{exc.start:,}); save it as a UTF-8 CSV file"
        ) from exc
    if not text.strip():  # a byte order mark alone
        raise DatasetError("the file is empty; send a CSV file with a header row")
    if _is_json(text):
        raise DatasetError(
            "the file is JSON, not CSV; send a CSV file with a header row "
            "(e.g. written with pandas.DataFrame(records).to_csv(path, index=False))"
        )
    return text


def _is_json(text: str) -> bool:
    """Whether the text is a JSON document, or JSON Lines (its first line is one)."""
    stripped = text.lstrip()
    if not stripped.startswith(("{", "[")):
        return False
    for candidate in (stripped, stripped.split("\n", 1)[0]):
        try:
            json.loads(candidate)
        except ValueError:
            continue
        return True
    return False


def _header(buffer: io.StringIO) -> list[str]:
    """The column names as the first non-blank line spells them, checked for what pandas
    would let pass: it renames a second ``a`` to ``a.1``, and takes the first values of
    each row as row labels, not a column, when the first row is longer than the header."""
    try:
        rows = (row for row in csv.reader(buffer) if any(cell.strip() for cell in row))
        header = next(rows, [])
        first = next(rows, [])
    except csv.Error as exc:
        raise DatasetError(
            f"the header row is not readable CSV ({exc}); check its quotes and commas"
        ) from exc
    repeated = [(name, n) for name, n in Counter(header).items() if n > 1 and name.strip()]
    # A first line of numbers is data, not a header; the missing target will say so.
    if repeated and not all(_is_number(name) for name in header):
        described = [f"{name!r} ({n} times)" for name, n in repeated]
        raise DatasetError(
            f"the header names columns more than once: {_listed(described)}; give every "
            "column its own name"
        )
    if len(first) > len(header):
        raise DatasetError(
            f"the first row has {len(first)} values but the header names {len(header)} "
            "columns; name every column in the header"
        )
    return header


def _check_limit(count: int, limit: int | None, what: str, setting: str) -> None:
    if limit is not None and count > limit:
        raise DatasetError(
            f"the dataset has {count:,} {what}; at most {limit:,} are allowed ({setting}); "
            f"upload fewer {what}"
        )


def _listed(items: Sequence[str]) -> str:
    """Items for a message: the first MAX_NAMED, then how many more there are."""
    shown = ", ".join(items[:MAX_NAMED])
    return shown if len(items) <= MAX_NAMED else f"{shown} and {len(items) - MAX_NAMED} more"


def _rows(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _first_non_number(column: pd.Series) -> Any:
    """The first value of a column that does not read as a number, if any."""
    numbers = pd.to_numeric(column, errors="coerce")
    offending = column[numbers.isna() & column.notna()]
    return _plain(offending.iloc[0]) if len(offending) else None


def _with_example(name: str, value: Any) -> str:
    if value is None:
        return name
    shown = repr(value)
    return f"{name} (e.g. {shown[:40] + '...' if len(shown) > 40 else shown})"


def _non_finite(name: str, missing: int, infinite: int) -> str:
    parts = [
        f"{_rows(missing)} missing" if missing else "",
        f"{_rows(infinite)} infinite" if infinite else "",
    ]
    return f"{name} ({' and '.join(p for p in parts if p)})"
