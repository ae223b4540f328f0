"""Retention of experiment folders and batch outputs, once their jobs are old.

Every job writes ``<experiments>/<job id>/``: Tune's trial folders and checkpoints, or a
packed job's pack states and one best checkpoint per trial. Once a job has ended, only
the checkpoint its registered model points at (ModelRecord.checkpoint_uri) is still
needed, for predictions; the rest is kept ``keep_s`` for ``tunefleet import`` and a
look at the trials, then removed. A job without a model (failed, cancelled, or its
model deleted) loses its whole folder. A folder whose job record has expired goes the
same way, as soon as nothing in it has changed for ``keep_s``: the records expire after
their own retention, and a folder copied in by hand gets that long too.

The folders of queued, running and cancelling jobs are never touched.

Batch jobs write ``<batches>/[tenants/<tenant>/]<job id>/<claim token>/``: the output
of the attempt that succeeded, and whatever an attempt whose lease ran out left. Once
the job has ended the other attempts' folders go; ``keep_s`` after it ended (or after
its record expired and nothing changed), the whole job folder goes.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from shared.errors import NotFoundError
from shared.folders import TENANTS_FOLDER
from shared.jobs import JobStore
from shared.registry import ModelRegistry
from shared.storage import Entry, StoragePath, storage_path
from shared.vocabulary import JOB_ID_PATTERN

log = logging.getLogger(__name__)

# A path below a job folder, as its parts; () is the whole folder.
RelativePath = tuple[str, ...]


@dataclass
class Swept:
    """What one sweep removed: the job folders it trimmed or removed, and the files
    and bytes that went."""

    job_ids: list[str] = field(default_factory=list)
    removed_files: int = 0
    removed_bytes: int = 0

    def add(self, job_id: str, files: int, size: int) -> None:
        self.job_ids.append(job_id)
        self.removed_files += files
        self.removed_bytes += size

    def log(self, what: str) -> None:
        if self.job_ids:
            log.info(
                "%s of %d jobs (%d files, %d bytes)",
                what, len(self.job_ids), self.removed_files, self.removed_bytes,
            )  # fmt: skip


def sweep_experiments(
    experiments_dir: PurePath | StoragePath,
    jobs: JobStore,
    registry: ModelRegistry,
    keep_s: float,
    now: float | None = None,
) -> Swept:
    """Trim the experiment folders of jobs that ended more than ``keep_s`` ago (and of
    jobs whose records have expired) to their registered model's checkpoint folder, or
    remove them where no model points into them. The folder may be in a bucket."""
    experiments = storage_path(experiments_dir)
    now = time.time() if now is None else now
    # Jobs first, models second: a job registers its model before it ends, so every
    # job seen as ended here has its model in the records read next.
    due = [
        job_id
        for job_id in _job_folders(experiments)
        if _due(experiments, job_id, jobs, keep_s, now)
    ]
    swept = Swept()
    if not due:
        return swept
    kept = _kept_checkpoints(experiments, registry)
    for job_id in due:
        keep = kept.get(job_id, set())
        if () in keep:
            continue  # a model points at the folder itself
        folder = experiments / job_id
        try:
            files, size = _remove_except(folder, keep) if keep else _remove_folder(folder)
        except OSError as exc:  # one folder that cannot go must not stop the others
            log.warning("experiments: could not trim the folder of job %s: %s", job_id, exc)
            continue
        if files or not keep:
            swept.add(job_id, files, size)
    swept.log("experiments: trimmed or removed the folders")
    return swept


def sweep_batches(
    batches_dir: PurePath | StoragePath, jobs: JobStore, keep_s: float, now: float | None = None
) -> Swept:
    """Remove batch jobs' outputs ``keep_s`` after their jobs ended, and ended jobs'
    folders of attempts other than the one whose output the job names."""
    root = storage_path(batches_dir)
    now = time.time() if now is None else now
    swept = Swept()
    tenants = [entry.path for entry in (root / TENANTS_FOLDER).entries() if entry.is_dir]
    for tenant_root in (root, *tenants):
        for job_id in _job_folders(tenant_root):
            folder = tenant_root / job_id
            try:
                if _due(tenant_root, job_id, jobs, keep_s, now):
                    files, size = _remove_folder(folder)
                else:
                    files, size = _remove_stale_attempts(folder, jobs, job_id)
            except OSError as exc:
                log.warning("batches: could not sweep the folder of job %s: %s", job_id, exc)
                continue
            if files:
                swept.add(job_id, files, size)
    swept.log("batches: removed outputs")
    return swept


def _remove_stale_attempts(folder: StoragePath, jobs: JobStore, job_id: str) -> tuple[int, int]:
    """Of an ended job, the attempt folders but the one holding its output."""
    try:
        job = jobs.get(job_id)
    except NotFoundError:
        return 0, 0
    if not job.state.is_terminal():
        return 0, 0
    files = size = 0
    for entry in folder.entries():
        if entry.is_dir and entry.name != job.output_attempt:
            more_files, more_size = _remove_folder(entry.path)
            files, size = files + more_files, size + more_size
    return files, size


def _job_folders(experiments: StoragePath) -> list[str]:
    """The job ids that have a folder; anything else there is left alone."""
    return [
        entry.name
        for entry in experiments.entries()
        if entry.is_dir and re.fullmatch(JOB_ID_PATTERN, entry.name)
    ]


def _due(experiments: StoragePath, job_id: str, jobs: JobStore, keep_s: float, now: float) -> bool:
    """Whether a job's folder may be trimmed now."""
    try:
        job = jobs.get(job_id)
    except NotFoundError:
        try:
            return now - _newest_change(experiments / job_id) >= keep_s
        except FileNotFoundError:  # removed meanwhile (by another driver's sweep)
            return False
    except (ValueError, KeyError):  # pydantic's ValidationError is a ValueError
        log.warning(
            "experiments: job %s has a record that cannot be read; its folder stays", job_id
        )
        return False
    if not job.state.is_terminal() or job.finished_at is None:
        return False
    return now - job.finished_at >= keep_s


def _newest_change(folder: StoragePath) -> float:
    """When anything below ``folder`` last changed (seconds since the epoch).
    FileNotFoundError when it is gone."""
    files = [entry.mtime for entry in folder.walk_files()]
    if folder.local is not None:
        # A local folder's own time counts too (a file removed from it changes it);
        # object storage has no folder to have a time.
        files.append(folder.local.lstat().st_mtime)
        files += [e.mtime for e in _folders_below(folder)]
    if not files:
        raise FileNotFoundError(folder.uri)
    return max(files)


def _folders_below(folder: StoragePath) -> list[Entry]:
    found = []
    for entry in folder.entries():
        if entry.is_dir:
            found += [entry, *_folders_below(entry.path)]
    return found


def _kept_checkpoints(
    experiments: StoragePath, registry: ModelRegistry
) -> dict[str, set[RelativePath]]:
    """Job id -> the checkpoint folders below its folder that a model points at."""
    kept: dict[str, set[RelativePath]] = {}
    for record in registry.records():
        uri = record.checkpoint_uri
        if "://" not in uri and not Path(uri).is_absolute():
            continue
        parts = _parts_below(uri, experiments)
        if parts is None:
            parts = _below_job(uri, record.job_id)
        if parts and re.fullmatch(JOB_ID_PATTERN, parts[0]):
            kept.setdefault(parts[0], set()).add(parts[1:])
    return kept


def _parts_below(uri: str, experiments: StoragePath) -> RelativePath | None:
    """The parts of a checkpoint's path below the experiments folder; None when it is
    not below it."""
    if "://" in uri:
        root = experiments.uri + "/"
        return tuple(uri.rstrip("/")[len(root) :].split("/")) if uri.startswith(root) else None
    if experiments.local is None:
        return None
    try:
        return Path(uri).resolve().relative_to(experiments.local.resolve()).parts
    except ValueError:
        return None


def _below_job(uri: str, job_id: str) -> RelativePath:
    """The parts of ``uri`` from its job's folder on, for a checkpoint written where
    the storage root had another name (another mount point of the same share): the
    job id is in its path all the same. () when it is not."""
    parts = tuple(part for part in uri.split("/") if part)
    if job_id not in parts:
        return ()
    index = len(parts) - 1 - parts[::-1].index(job_id)
    return parts[index:]


def _remove_except(folder: StoragePath, keep: set[RelativePath]) -> tuple[int, int]:
    """Remove everything below ``folder`` but the ``keep`` paths (relative to it) and
    what lies below them; the files and bytes removed."""
    files = size = 0
    for entry in folder.entries():
        inside = {kept[1:] for kept in keep if kept and kept[0] == entry.name}
        if () in inside:
            continue  # a kept checkpoint folder, whole
        if inside and entry.is_dir:
            more_files, more_size = _remove_except(entry.path, inside)
        elif entry.is_dir:
            more_files, more_size = _remove_folder(entry.path)
        else:
            entry.path.unlink(missing_ok=True)
            more_files, more_size = 1, entry.size
        files += more_files
        size += more_size
    return files, size


def _remove_folder(folder: StoragePath) -> tuple[int, int]:
    """Remove a folder (links are removed, never followed); the files and bytes it held."""
    files = list(folder.walk_files())
    folder.rmtree()
    return len(files), sum(entry.size for entry in files)
