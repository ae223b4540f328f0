"""Running a batch job: an uploaded table scored with a model on the cluster, in Ray tasks.

The upload's Parquet copy is cut into pieces of whole row groups (see
shared.data.PARQUET_ROW_GROUP_ROWS); a Ray task per piece reads it, scores it and writes
it, with the model's columns added, as a part file in the output's format below the
job's folder. The driver then joins the parts, in the table's order, into
``<storage>/batches/<job id>/<claim token>/predictions.<format>``, which
GET /jobs/{id}/output streams: CSV parts byte for byte (only the first has the header),
Parquet parts row group by row group. An upload without a Parquet copy is read whole,
as one piece.

Tasks, not a pool of actors: tasks run in Ray's idle worker processes, which stay warm
between jobs (torch imported, and the model kept once loaded, see _model), where Ray
Data's actor pool started new worker processes for every job; tasks spread over the
nodes. At most ``batch_max_workers`` pieces are scored at once.

The scorers report rows to a small counter actor as they go; the driver reads it about
once a second for the job's progress, and on cancel (or a lost lease) sets its stop
flag, which the scorers see at their next batch, and cancels the pieces not done; it
returns once every task has ended, so that none writes after.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.csv
import pyarrow.parquet
import ray
import torch
from ray.actor import ActorHandle

from services.driver.context import JobContext
from shared.batch import BatchSpec, attempt_folder, check_scorable, output_columns, output_file
from shared.data import ROW_COLUMN, DatasetStore
from shared.errors import TunefleetError
from shared.jobs import JobStore
from shared.lease import Lease
from shared.model import ModelBundle
from shared.preprocessing import ValueReadError
from shared.registry import ModelRecord
from shared.settings import Settings
from shared.storage import StoragePath

log = logging.getLogger(__name__)

# Rows per forward pass of a scorer: large enough that a forward pass, not Python, takes
# the time (a digits model scores 4,096 rows in a few ms), small enough that a cancel is
# seen soon.
SCORE_BATCH_ROWS = 4096
# Row groups per piece: a task's share of the table (65,536 rows each).
PIECE_ROW_GROUPS = 1
PROGRESS_INTERVAL_S = 1.0
PARTS_FOLDER = "parts"
# How long an attempt that must end waits for its scorers to see the stop flag.
STOP_WAIT_S = 60.0
# Models a worker process keeps loaded between its pieces (and between jobs).
KEPT_MODELS = 4
COPY_CHUNK_BYTES = 8 * 2**20


class BatchFailedError(TunefleetError):
    """Raised when a batch job's table cannot be scored; the message says why."""


class BatchCancelledError(Exception):
    """Raised inside a scorer once its job was told to stop; it ends the task."""


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


@dataclass(frozen=True)
class _Piece:
    """Part of the table one task scores: its row groups (None: the whole table, read
    from its CSV), the number of its first row, and where its part file goes."""

    groups: list[int] | None
    first_row: int
    part: StoragePath


_models: collections.OrderedDict[str, ModelBundle] = collections.OrderedDict()


def _model(checkpoint: StoragePath) -> ModelBundle:
    """The model of ``checkpoint``, loaded once per worker process (a checkpoint never
    changes: a model's files are written once)."""
    key = checkpoint.uri
    if key not in _models:
        _models[key] = ModelBundle.load(checkpoint)
        while len(_models) > KEPT_MODELS:
            _models.popitem(last=False)
    _models.move_to_end(key)
    return _models[key]


def score_piece(
    table: StoragePath,
    numeric: list[str],
    piece: _Piece,
    checkpoint: StoragePath,
    output_format: str,
    progress: ActorHandle,
) -> str:
    """Score one piece of the table and write its part file; the node it ran on. Run as
    a Ray task (_score_piece), which Ray finds by this module-level name in the worker."""
    # One intra-op thread: a task per CPU, and these nets are small.
    torch.set_num_threads(1)
    bundle = _model(checkpoint)
    columns = output_columns(bundle.task, bundle.classes)
    rows = _read_piece(table, numeric, piece.groups)
    filesystem, path = piece.part.arrow
    last_report: ray.ObjectRef | None = None
    with filesystem.open_output_stream(path) as out:
        writer: Any = None
        for start in range(0, max(rows.num_rows, 1), SCORE_BATCH_ROWS):
            # The answer to the last report says whether to stop: it has come back by
            # now, so asking costs no round trip.
            if last_report is not None and ray.get(last_report):
                raise BatchCancelledError("the batch job was told to stop")
            batch = rows.slice(start, SCORE_BATCH_ROWS)
            scored = score_rows(bundle, columns, batch, piece.first_row + start)
            if writer is None:
                writer = _part_writer(out, scored.schema, output_format, piece.first_row == 0)
            writer.write_table(scored)
            last_report = progress.add.remote(batch.num_rows)
        writer.close()
    return str(ray.get_runtime_context().get_node_id())


# The function itself stays a plain module attribute: the task refers to it by name,
# rather than carrying its code and globals (torch among them) pickled by value.
_score_piece = ray.remote(num_cpus=1)(score_piece)


def _read_piece(table: StoragePath, numeric: list[str], groups: list[int] | None) -> pa.Table:
    """A piece's rows, without the row numbers of the Parquet copy."""
    filesystem, path = table.arrow
    if groups is None:
        with filesystem.open_input_stream(path) as source:
            rows = pyarrow.csv.read_csv(
                source,
                # Features as numbers whatever the first rows look like (pyarrow infers
                # types from a first block); the other columns keep their inferred types.
                convert_options=pyarrow.csv.ConvertOptions(
                    column_types={name: pa.float64() for name in numeric}
                ),
            )
    else:
        with filesystem.open_input_file(path) as source:
            rows = pyarrow.parquet.ParquetFile(source).read_row_groups(groups)
    return rows.drop_columns([ROW_COLUMN]) if ROW_COLUMN in rows.column_names else rows


def score_rows(
    bundle: ModelBundle, columns: list[str], batch: pa.Table, first_row: int = 0
) -> pa.Table:
    """``batch`` with the model's ``columns`` (shared.batch.output_columns) added: what
    /predict answers for its rows. ``first_row``: the table's number of its first row,
    for the error that names a cell."""
    values = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in bundle.inputs}
    try:
        encoded = bundle.encode(values)
    except ValueReadError as exc:
        raise BatchFailedError(
            f"the {_ordinal(first_row + exc.row + 1)} row of the table: {exc.detail}; fix "
            "or drop such rows and upload the table again"
        ) from None
    # The predictor's own code path: the output is what /predict answers.
    predictions, probabilities = bundle.predict_encoded(encoded)
    scored = batch.append_column(columns[0], pa.array(predictions))
    if probabilities is not None:
        for index, name in enumerate(columns[1:]):
            scored = scored.append_column(name, pa.array(probabilities[:, index]))
    return scored


def _part_writer(out: Any, schema: pa.Schema, output_format: str, header: bool) -> Any:
    """A writer of a part file: CSV (with the header only in the first part, so that the
    parts put end to end are the output) or Parquet."""
    if output_format == "csv":
        options = pyarrow.csv.WriteOptions(include_header=header)
        return pyarrow.csv.CSVWriter(out, schema, write_options=options)
    return pyarrow.parquet.ParquetWriter(out, schema)


def run_batch(context: JobContext, spec: BatchSpec) -> None:
    """Score a batch job's table, write its output and mark it succeeded.

    Each attempt (a claim of the job) writes into a folder of its own, named by its
    claim's token, and only the lease holder publishes its output (the job's record
    names the attempt). However this ends short of that, the scorers are stopped and
    the attempt's own folder removed: never another attempt's. When ``should_stop``
    turns true the job is left for the caller. A job run again starts over.
    """
    lease, settings, jobs, tenant = context.lease, context.settings, context.jobs, context.tenant
    should_stop, job_id = context.should_stop, context.job_id
    record = context.registry.get(
        spec.model
    )  # NotFoundError once deleted: the job fails, saying so
    datasets = DatasetStore(settings.datasets_of(tenant))
    # Checked at submit; again here, as the model or the upload may have changed since.
    check_scorable(datasets.summary(spec.dataset.upload), record)
    table = datasets.table(spec.dataset.upload)
    batches = settings.batches_of(tenant)  # counted in the tenant's quota
    folder = attempt_folder(batches, job_id, lease.token)
    parts = folder / PARTS_FOLDER
    published = False
    try:
        scored = _score(
            table, record, settings, parts, spec.format, lease, spec.rows, jobs, should_stop
        )
        if scored is not None:
            files, nodes = scored
            _join_parts(files, output_file(batches, job_id, spec.format, lease.token), spec.format)
            parts.rmtree()
            jobs.succeed_batch(lease, spec.rows, nodes)  # fenced: only the lease holder's output
            published = True
    finally:
        if not published:
            folder.rmtree()


def _score(
    table: tuple[StoragePath, str],
    record: ModelRecord,
    settings: Settings,
    parts: StoragePath,
    output_format: str,
    lease: Lease,
    rows_total: int,
    jobs: JobStore,
    should_stop: Callable[[], bool],
) -> tuple[list[StoragePath], list[str]] | None:
    """Write the scored rows as part files below ``parts``: the parts in the table's
    order and the nodes that scored them, or None if told to stop. However it ends (a
    lost lease, Redis gone), no scorer writes after it returns."""
    numeric = [name for name in record.feature_names if record.role_of(name) == "numeric"]
    checkpoint = settings.storage_at(record.checkpoint_uri)
    pieces = _pieces(*table, parts, output_format)
    parts.mkdir(parents=True, exist_ok=True)  # once, for every piece's part file
    waiting = collections.deque(pieces)
    progress = _Progress.remote()  # type: ignore[attr-defined]
    running: list[ray.ObjectRef] = []
    rows_reported = 0
    nodes: list[str] = []
    try:
        while waiting or running:
            while waiting and len(running) < settings.batch_max_workers:
                running.append(
                    _score_piece.options(scheduling_strategy="SPREAD").remote(
                        table[0], numeric, waiting.popleft(), checkpoint, output_format, progress
                    )
                )
            done, running = ray.wait(running, num_returns=len(running), timeout=PROGRESS_INTERVAL_S)
            nodes += [_check(ref) for ref in done]
            rows = min(int(ray.get(progress.rows.remote())), rows_total)
            if rows != rows_reported:
                jobs.record_rows(lease, rows)
                rows_reported = rows
            if should_stop():
                return None
    finally:
        _stop(progress, running)
    return [piece.part for piece in pieces], nodes


def _pieces(
    table: StoragePath, table_format: str, parts: StoragePath, output_format: str
) -> list[_Piece]:
    """The table in pieces of PIECE_ROW_GROUPS row groups, in order (a table read from
    its CSV is one piece)."""
    if table_format != "parquet":
        return [_Piece(None, 0, parts / f"part-00000.{output_format}")]
    filesystem, path = table.arrow
    with filesystem.open_input_file(path) as source:
        metadata = pyarrow.parquet.ParquetFile(source).metadata
    counts = [metadata.row_group(group).num_rows for group in range(metadata.num_row_groups)]
    pieces: list[_Piece] = []
    first_row = 0
    for start in range(0, max(len(counts), 1), PIECE_ROW_GROUPS):
        groups = list(range(start, min(start + PIECE_ROW_GROUPS, len(counts))))
        part = parts / f"part-{len(pieces):05d}.{output_format}"
        pieces.append(_Piece(groups, first_row, part))
        first_row += sum(counts[group] for group in groups)
    return pieces


def _check(done: ray.ObjectRef) -> str:
    """A finished piece's node; what its task raised, as the job's failure."""
    try:
        return str(ray.get(done))
    except ray.exceptions.RayTaskError as exc:
        raise BatchFailedError(f"the table could not be scored: {_root_cause(exc)}") from None


def _stop(progress: ActorHandle, running: list[ray.ObjectRef]) -> None:
    """Stop the pieces still running (they see the flag at their next batch; those not
    started are cancelled), wait for them to end, and drop the counter."""
    if running:
        progress.stop.remote()
        for ref in running:
            ray.cancel(ref)
        ray.wait(running, num_returns=len(running), timeout=STOP_WAIT_S)
    ray.kill(progress)


def _join_parts(parts: list[StoragePath], output: StoragePath, output_format: str) -> None:
    """One file from the parts, in their order: CSV parts end to end (the first holds
    the header), Parquet parts' row groups into one file, one row group in memory at a
    time."""
    filesystem, path = output.arrow
    if output_format == "csv":
        with filesystem.open_output_stream(path) as out:
            for part in parts:
                part_filesystem, part_path = part.arrow
                with part_filesystem.open_input_stream(part_path) as source:
                    while chunk := source.read(COPY_CHUNK_BYTES):
                        out.write(chunk)
        return
    writer: pyarrow.parquet.ParquetWriter | None = None
    try:
        for part in parts:
            part_filesystem, part_path = part.arrow
            with part_filesystem.open_input_file(part_path) as source:
                rows = pyarrow.parquet.ParquetFile(source)
                if writer is None:
                    writer = pyarrow.parquet.ParquetWriter(
                        path, rows.schema_arrow, filesystem=filesystem
                    )
                for group in range(rows.num_row_groups):
                    writer.write_table(rows.read_row_group(group).cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _root_cause(exc: BaseException) -> str:
    """The last line of the innermost error: Ray wraps a task's error in its own, with a
    traceback."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
