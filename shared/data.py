"""Datasets: where they come from, what is kept of an upload, and its summary.

A dataset is a table of feature columns (numbers, text categories, dates, gaps) and one
target column: the class of each row (classification) or a number (regression). Each
feature column has a role (shared.column_roles), shown in the summary. Built-in
datasets ship with scikit-learn; uploaded ones are CSV or Parquet files kept under the
storage root by content hash, beside their summary and a Parquet copy. Parsing is
csv_files', the checks that make a table trainable dataset_checks', and a job's split
the driver's (services/driver/splits).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import PurePath
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet
from pydantic import BaseModel, Field, ValidationError
from sklearn import datasets as sk_datasets

from shared.column_roles import category_counts, check_override_names, infer_roles
from shared.csv_files import is_parquet, read_table_bytes
from shared.dataset_checks import check_split, plain, usable
from shared.errors import DatasetError, NotFoundError
from shared.quotas import ensure_room
from shared.settings import DEFAULT_MAX_CLASSES
from shared.spec import DatasetSpec
from shared.storage import StoragePath, storage_path
from shared.vocabulary import DATASET_ID_PATTERN, Role, Subject, Task
from shared.wording import listed

DEFAULT_TARGET = "target"
# An upload kept as it came: a CSV file, or a Parquet file.
SOURCE_SUFFIXES = (".csv", ".source.parquet")
# Categories a summary shows of each categorical column, the most frequent first.
SUMMARY_CATEGORIES = 10
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
    roles: dict[str, Role] = Field(
        default_factory=dict,
        description="Each feature column's inferred role; a job spec's dataset.columns "
        "may set others.",
    )
    ignored: dict[str, str] = Field(
        default_factory=dict, description="Why each ignored column is ignored."
    )
    missing: dict[str, int] = Field(
        default_factory=dict, description="Gaps per column, for the columns that have any."
    )
    categories: dict[str, dict[str, int]] = Field(
        default_factory=dict,
        description=f"The {SUMMARY_CATEGORIES} most frequent values of each categorical "
        "column, with their counts.",
    )
    rows_without_target: int = Field(
        default=0, description="Rows whose target is a gap: jobs leave them out."
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
        max_classes: int = DEFAULT_MAX_CLASSES,
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
        source = self._root / f"{dataset_id}{SOURCE_SUFFIXES[is_parquet(content)]}"
        known = source.is_file()
        ensure_room(
            used_bytes=self.used_bytes() if quota_bytes else 0,
            adding_bytes=0 if known else len(content),
            quota_bytes=quota_bytes,
            what="datasets",
            setting="TUNEFLEET_MAX_DATASET_BYTES_PER_TENANT",
            fix="delete datasets it no longer needs",
            subject=Subject.DATASET,
        )
        frame = read_table_bytes(content, max_rows=max_rows, max_columns=max_columns)
        if purpose == "scoring":
            summary = summarize_for_scoring(frame, dataset_id)
        else:
            summary = summarize(frame, target, dataset_id, max_classes=max_classes)
        self._root.mkdir(parents=True, exist_ok=True)
        # The tables before the summary: a dataset is found by its summary.
        source.write_bytes(content)
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
        content = self._source(dataset_id).read_bytes()
        return read_table_bytes(content, max_rows=max_rows, max_columns=max_columns)

    def table(self, dataset_id: str) -> tuple[StoragePath, Literal["parquet", "csv"]]:
        """Where an upload's table lies for readers that stream it (Ray Data), and its
        format: its Parquet copy (see parquet_copy), else the CSV itself (an upload kept
        before copies were made, or one that would not convert);
        NotFoundError if there is no such upload."""
        self.summary(dataset_id)
        columnar = self._root / f"{dataset_id}.parquet"
        if columnar.is_file():
            return columnar, "parquet"
        return self._source(dataset_id), "csv"

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
        for suffix in (".json", *SOURCE_SUFFIXES, ".parquet"):
            (self._root / f"{dataset_id}{suffix}").unlink(missing_ok=True)

    def used_bytes(self) -> int:
        """Bytes of the uploads and summaries kept here. Only this folder's own files: the default
        tenant's folder holds the other tenants' folders (see shared.folders.tenant_folder)."""
        # The Parquet copies are derived (see parquet_copy): the quota counts the uploads.
        return sum(
            e.size
            for e in self._root.entries()
            if not (e.is_dir or e.is_symlink or re.fullmatch(r"[0-9a-f]+\.parquet", e.name))
        )

    def _source(self, dataset_id: str) -> StoragePath:
        """The upload as it came, CSV or Parquet."""
        for suffix in SOURCE_SUFFIXES[1:]:
            path = self._root / f"{dataset_id}{suffix}"
            if path.is_file():
                return path
        return self._root / f"{dataset_id}{SOURCE_SUFFIXES[0]}"


def parquet_copy(frame: pd.DataFrame) -> bytes | None:
    """An upload as Parquet, for batch jobs: Ray Data reads a CSV file as one task and
    parses it there, a Parquet file in row groups at a fraction of the cost (1,000,000
    digits rows: 2.6 s against 0.4 s here). Made from the table as the upload's check
    read it (the same column types and values), with ROW_COLUMN numbering the rows; None
    if a column will not convert or is named so, and the CSV is read instead."""
    if ROW_COLUMN in frame.columns:
        return None
    try:
        table = pa.Table.from_pandas(_text_as_strings(frame), preserve_index=False)
        table = table.append_column(ROW_COLUMN, pa.array(np.arange(len(frame), dtype=np.int64)))
    except (pa.ArrowException, ValueError, TypeError):
        return None
    sink = pa.BufferOutputStream()
    pyarrow.parquet.write_table(table, sink, row_group_size=PARQUET_ROW_GROUP_ROWS)
    return bytes(sink.getvalue())


def _text_as_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of mixed values (numbers and text) as strings, gaps kept: Arrow takes one
    type a column. The values read the same to a model's plan (see category_key)."""
    mixed = [
        name
        for name in frame.columns
        if frame[name].dtype == object
        and len({type(v) for v in frame[name].dropna().head(10_000)}) > 1
    ]
    if not mixed:
        return frame
    converted = frame.copy()
    for name in mixed:
        converted[name] = frame[name].map(lambda v: None if pd.isna(v) else str(v))
    return converted


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
        target = spec.target or summary.target or DEFAULT_TARGET
        _check_overrides(spec, summary, target)
        return target
    return spec.target or DEFAULT_TARGET


def _check_overrides(spec: DatasetSpec, summary: DatasetSummary, target: str) -> None:
    """DatasetError for a role set on a column the upload lacks (or on the target), or
    ``numeric`` on a column of text: at submit, not in a failed job later. The values
    are checked in full when the job prepares the data."""
    features = [c for c in (*summary.columns, summary.target) if c and c != target]
    check_override_names(spec.columns, features, f"dataset {summary.id}")
    text = [
        name
        for name, role in spec.columns.items()
        if role == "numeric" and summary.column_types.get(name) == "text"
    ]
    if text:
        raise DatasetError(
            f"dataset.columns makes {listed([repr(n) for n in text])} numeric, but "
            f"{'it holds' if len(text) == 1 else 'they hold'} text; make "
            f"{'it' if len(text) == 1 else 'them'} categorical, or leave the role to be inferred"
        )


def summarize(
    frame: pd.DataFrame,
    target: str,
    dataset_id: str,
    task: Task | None = None,
    max_classes: int = DEFAULT_MAX_CLASSES,
) -> DatasetSummary:
    """Check that a table can be trained on and describe it: rows, roles, gaps,
    categories, classes, and what would fail a job with the default splits."""
    table = usable(frame, target, task, max_classes)
    labels = table.labels
    roles = infer_roles(table.features)
    missing = frame.isna().sum()
    summary = DatasetSummary(
        id=dataset_id,
        rows=len(frame),
        columns=[str(name) for name in table.features.columns],
        target=target,
        task=table.task,
        column_types={str(name): _column_type(frame[name]) for name in frame.columns},
        roles={name: role.role for name, role in roles.items()},
        ignored={name: role.reason for name, role in roles.items() if role.role == "ignore"},
        missing={str(name): int(n) for name, n in missing.items() if n},
        categories={
            name: {
                str(c): int(n)
                for c, n in category_counts(frame[name]).head(SUMMARY_CATEGORIES).items()
            }
            for name, role in roles.items()
            if role.role == "categorical"
        },
        rows_without_target=table.rows_without_target,
    )
    if table.task == "classification":
        counts = labels.value_counts().sort_index()
        summary.classes = [plain(c) for c in counts.index]
        summary.class_counts = {str(plain(c)): int(n) for c, n in counts.items()}
    if all(role.role == "ignore" for role in roles.values()):
        summary.problems.append(
            "every feature column is ignored; set roles in a job's dataset.columns, or add "
            "columns to learn from"
        )
    # The splits are checked when a job prepares the data; checked here too, with the
    # defaults, an upload that no default job could train on says so before a job fails.
    # model_construct: the defaults only, without naming a source.
    defaults = DatasetSpec.model_construct()
    try:
        check_split(labels, defaults, defaults.stratify and table.task == "classification")
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
