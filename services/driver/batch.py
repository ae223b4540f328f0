"""Running a batch job: an uploaded table scored with a model on the cluster, with Ray Data.

Ray Data reads the upload from storage (its Parquet copy, else its CSV), scores it in
batches on a pool of Ray workers that each load the model once (a callable class), and
writes the rows with the model's columns added as part files below the job's folder;
the driver then
joins the parts into one file, ``<storage>/batches/<job id>/<claim token>/predictions.<format>``,
which GET /jobs/{id}/output streams. Rows keep their order (preserve_order), so the
output's rows line up with the input's.

The scorers report rows to a small counter actor as they go; the driver reads it about
once a second for the job's progress, and on cancel (or a lost lease) sets its stop
flag, which the scorers see at their next batch: they raise, and the dataset stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute
import pyarrow.csv
import pyarrow.parquet
import ray
import torch
from ray.actor import ActorHandle

from shared.auth import tenant_folder
from shared.batch import BatchSpec, attempt_folder, check_scorable, output_columns, output_file
from shared.data import ROW_COLUMN, DatasetStore
from shared.errors import TunefleetError
from shared.jobs import JobStore, Lease
from shared.model import ModelBundle
from shared.preprocessing import ValueReadError
from shared.registry import ModelRecord, ModelRegistry
from shared.settings import Settings
from shared.storage import StoragePath
from shared.vocabulary import DEFAULT_TENANT

log = logging.getLogger(__name__)

# Rows per call of a scorer: large enough that a forward pass, not Python, takes the time
# (a digits model scores 4,096 rows in a few ms), small enough that a cancel is seen soon.
SCORE_BATCH_ROWS = 4096
PROGRESS_INTERVAL_S = 1.0
PARTS_FOLDER = "parts"
# How long an attempt that must end waits for its scorers to see the stop flag.
STOP_WAIT_S = 60.0


class BatchFailedError(TunefleetError):
    """Raised when a batch job's table cannot be scored; the message says why."""


class BatchCancelledError(Exception):
    """Raised inside a scorer once its job was told to stop; it ends the dataset."""


@ray.remote(num_cpus=0)
class _Progress:
    """Rows scored so far, and whether the scorers should stop."""

    def __init__(self) -> None:
        self._rows = 0
        self._stopped = False

    def add(self, rows: int) -> bool:
        self._rows += rows
        return self._stopped

    def rows(self) -> int:
        return self._rows

    def stop(self) -> None:
        self._stopped = True


class Scorer:
    """Scores batches with one model, loaded once per Ray worker."""

    def __init__(self, checkpoint: StoragePath, progress: ActorHandle) -> None:
        # One intra-op thread: the pool has a worker per CPU, and these nets are small.
        torch.set_num_threads(1)
        self._bundle = ModelBundle.load(checkpoint)
        self._columns = output_columns(self._bundle.task, self._bundle.classes)
        self._progress = progress
        self._last_report: ray.ObjectRef | None = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        # The answer to the previous report says whether to stop: it has come back by
        # now, so asking costs no round trip.
        if self._last_report is not None and ray.get(self._last_report):
            raise BatchCancelledError("the batch job was told to stop")
        bundle = self._bundle
        columns = {
            name: batch.column(name).to_numpy(zero_copy_only=False) for name in bundle.inputs
        }
        try:
            encoded = bundle.encode(columns)
        except ValueReadError as exc:
            raise BatchFailedError(
                f"the {_ordinal(exc.row + 1)} row of a batch: {exc.detail}; fix or drop "
                "such rows and upload the table again"
            ) from None
        # The predictor's own code path: the output is what /predict answers.
        predictions, probabilities = bundle.predict_encoded(encoded)
        scored = batch.append_column(self._columns[0], pa.array(predictions))
        if probabilities is not None:
            for index, name in enumerate(self._columns[1:]):
                scored = scored.append_column(name, pa.array(probabilities[:, index]))
        self._last_report = self._progress.add.remote(batch.num_rows)
        return scored


def run_batch(
    lease: Lease,
    spec: BatchSpec,
    settings: Settings,
    jobs: JobStore,
    registry: ModelRegistry,
    should_stop: Callable[[], bool] = lambda: False,
    tenant: str = DEFAULT_TENANT,
) -> None:
    """Score a batch job's table, write its output and mark it succeeded.

    Each attempt (a claim of the job) writes into a folder of its own, named by its
    claim's token, and only the lease holder publishes its output (the job's record
    names the attempt). However this ends short of that, the scorers are stopped and
    the attempt's own folder removed: never another attempt's. When ``should_stop``
    turns true the job is left for the caller. A job run again starts over.
    """
    job_id = lease.job_id
    record = registry.get(spec.model)  # NotFoundError once deleted: the job fails, saying so
    datasets = DatasetStore(tenant_folder(settings.datasets_dir, tenant))
    # Checked at submit; again here, as the model or the upload may have changed since.
    check_scorable(datasets.summary(spec.dataset.upload), record)
    table, table_format = datasets.table(spec.dataset.upload)
    batches = tenant_folder(settings.batches_dir, tenant)  # counted in the tenant's quota
    folder = attempt_folder(batches, job_id, lease.token)
    parts = folder / PARTS_FOLDER
    published = False
    try:
        if _score(
            table, table_format, record, settings, parts, lease, spec.rows, jobs, should_stop
        ):
            _join_parts(
                parts,
                output_file(batches, job_id, spec.format, lease.token),
                spec.format,
            )
            parts.rmtree()
            jobs.succeed_batch(lease, spec.rows)  # fenced: only the lease holder's output
            published = True
    finally:
        if not published:
            folder.rmtree()


def _score(
    table: StoragePath,
    table_format: str,
    record: ModelRecord,
    settings: Settings,
    parts: StoragePath,
    lease: Lease,
    rows_total: int,
    jobs: JobStore,
    should_stop: Callable[[], bool],
) -> bool:
    """Write the scored rows as part files below ``parts``; False if told to stop.
    However it ends (a lost lease, Redis gone), the scorers have stopped writing."""
    parts_fs, parts_path = parts.arrow
    progress = _Progress.remote()  # type: ignore[attr-defined]
    scored = _scored(table, table_format, record, settings, progress)
    failure: list[BaseException] = []

    def write_parts() -> None:
        try:
            # Parts as Parquet whatever the output's format: the join reads them back to
            # put the rows in order (see _join_parts).
            scored.write_parquet(parts_path, filesystem=parts_fs)
        except BaseException as exc:  # handed to the driver's thread, which decides
            failure.append(exc)

    writer = threading.Thread(target=write_parts, name=f"batch-{lease.job_id}", daemon=True)
    writer.start()
    try:
        stopping = _follow(writer, progress, lease, rows_total, jobs, should_stop)
    finally:
        if writer.is_alive():  # _follow raised: the scorers must not write on
            progress.stop.remote()
            writer.join(STOP_WAIT_S)
        ray.kill(progress)
    if stopping or should_stop():
        return False
    if failure:
        raise BatchFailedError(f"the table could not be scored: {_root_cause(failure[0])}")
    return True


def _scored(
    table: StoragePath,
    table_format: str,
    record: ModelRecord,
    settings: Settings,
    progress: ActorHandle,
) -> ray.data.Dataset:
    """The table with the model's columns added, on a pool of scorers, rows in order."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # output rows in input order
    context.enable_progress_bars = False  # progress goes to Redis
    numeric = [name for name in record.feature_names if record.role_of(name) == "numeric"]
    return _read(table, table_format, numeric).map_batches(
        Scorer,
        fn_constructor_kwargs={
            "checkpoint": settings.storage_at(record.checkpoint_uri),
            "progress": progress,
        },
        batch_size=SCORE_BATCH_ROWS,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=settings.batch_max_workers),
        num_cpus=1,
    )


def _follow(
    writer: threading.Thread,
    progress: Any,  # a _Progress actor's handle
    lease: Lease,
    rows_total: int,
    jobs: JobStore,
    should_stop: Callable[[], bool],
) -> bool:
    """Report the rows scored about once a second while ``writer`` runs, and tell the
    scorers to stop once ``should_stop`` says so; whether they were told."""
    rows_reported = 0
    stopping = False
    while writer.is_alive():
        writer.join(PROGRESS_INTERVAL_S)
        rows = min(int(ray.get(progress.rows.remote())), rows_total)
        if rows != rows_reported and not stopping:
            jobs.record_rows(lease, rows)
            rows_reported = rows
        if not stopping and should_stop():
            stopping = True
            progress.stop.remote()
    return stopping


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _read(table: StoragePath, table_format: str, numeric: list[str]) -> ray.data.Dataset:
    """The table to score: its Parquet copy (see shared.data.parquet_copy), else its CSV."""
    filesystem, path = table.arrow
    if table_format == "parquet":
        return ray.data.read_parquet(path, filesystem=filesystem)
    return ray.data.read_csv(
        path,
        filesystem=filesystem,
        # Features as numbers whatever a first block looks like (pyarrow infers types
        # from the first block it reads); the other columns keep their inferred types.
        convert_options=pyarrow.csv.ConvertOptions(
            column_types={name: pa.float64() for name in numeric}
        ),
    )


def _join_parts(parts: StoragePath, output: StoragePath, output_format: str) -> None:
    """One file, CSV or Parquet, from Ray Data's Parquet part files, rows in the input's
    order, one part in memory at a time.

    Ray Data may pass blocks on out of order even with preserve_order (a 237-row table
    once came out as rows 0-59, 119-236, 60-118, in one part). So each part is sorted by
    ROW_COLUMN and the parts by their first row; where the parts' rows still interleave,
    the whole output is sorted at once. ROW_COLUMN is dropped. A table without it (an
    upload read from its CSV) is joined in the parts' order.
    """
    files = sorted(
        (entry.path for entry in parts.entries() if not entry.is_dir), key=lambda p: p.name
    )
    ranges = [_row_range(part) for part in files]
    if all(found is not None for found in ranges):
        order = sorted(range(len(files)), key=lambda index: ranges[index] or (0, 0, 0))
        files = [files[index] for index in order]
        numbered = [found for index in order if (found := ranges[index]) is not None]
        tables: Iterator[pa.Table] = (_read_part(part) for part in files)
        if not _contiguous(numbered):
            tables = iter([_ordered(pa.concat_tables(list(tables), promote_options="permissive"))])
    else:
        tables = (_read_part(part) for part in files)
    filesystem, path = output.arrow
    writer: Any = None
    schema: pa.Schema | None = None
    with contextlib.ExitStack() as closing:
        for table in tables:
            table = table.drop_columns([ROW_COLUMN]) if ROW_COLUMN in table.column_names else table
            if writer is None or schema is None:
                schema = table.schema
                if output_format == "csv":
                    out = closing.enter_context(filesystem.open_output_stream(path))
                    writer = closing.enter_context(pyarrow.csv.CSVWriter(out, schema))
                else:
                    writer = closing.enter_context(
                        pyarrow.parquet.ParquetWriter(path, schema, filesystem=filesystem)
                    )
            writer.write_table(table.cast(schema))


def _row_range(part: StoragePath) -> tuple[int, int, int] | None:
    """A part's lowest and highest row number and its row count; None for a part
    without ROW_COLUMN."""
    filesystem, path = part.arrow
    if ROW_COLUMN not in pyarrow.parquet.read_schema(path, filesystem=filesystem).names:
        return None
    numbers = pyarrow.parquet.read_table(path, columns=[ROW_COLUMN], filesystem=filesystem)
    column = numbers.column(ROW_COLUMN)
    if numbers.num_rows == 0:
        return (-1, -1, 0)
    low, high = pyarrow.compute.min(column).as_py(), pyarrow.compute.max(column).as_py()
    return (low, high, numbers.num_rows)


def _contiguous(ranges: list[tuple[int, int, int]]) -> bool:
    """Whether parts holding these (lowest, highest, count) rows, in this order, number
    their rows 0, 1, 2, ... each part a whole run (row numbers are unique)."""
    expected = 0
    for low, high, count in ranges:
        if count == 0:
            continue
        if low != expected or high - low + 1 != count:
            return False
        expected = high + 1
    return True


def _read_part(part: StoragePath) -> pa.Table:
    filesystem, path = part.arrow
    return _ordered(pyarrow.parquet.read_table(path, filesystem=filesystem))


def _ordered(table: pa.Table) -> pa.Table:
    return table.sort_by(ROW_COLUMN) if ROW_COLUMN in table.column_names else table


def _root_cause(exc: BaseException) -> str:
    """The last line of the innermost error: Ray Data wraps a scorer's or reader's error
    in its own, with a traceback."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
