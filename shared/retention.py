"""Retention of experiment folders: a finished job's folder is trimmed once it is old.

Every job writes ``<experiments>/<job id>/``: Tune's trial folders and checkpoints, or a
packed job's pack states and one best checkpoint per trial. Once a job has ended, only
the checkpoint its registered model points at (ModelRecord.checkpoint_uri) is still
needed, for predictions; the rest is kept ``keep_s`` for ``tunefleet import`` and a
look at the trials, then removed. A job without a model (failed, cancelled, or its
model deleted) loses its whole folder. A folder whose job record has expired goes the
same way, as soon as nothing in it has changed for ``keep_s``: the records expire after
their own retention, and a folder copied in by hand gets that long too.

The folders of queued, running and cancelling jobs are never touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import NotFoundError
from shared.jobs import JOB_ID_PATTERN, JobStore
from shared.registry import ModelRegistry

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


def sweep_experiments(
    experiments_dir: Path,
    jobs: JobStore,
    registry: ModelRegistry,
    keep_s: float,
    now: float | None = None,
) -> Swept:
    """Trim the experiment folders of jobs that ended more than ``keep_s`` ago (and of
    jobs whose records have expired) to their registered model's checkpoint folder, or
    remove them where no model points into them."""
    now = time.time() if now is None else now
    # Jobs first, models second: a job registers its model before it ends, so every
    # job seen as ended here has its model in the records read next.
    due = [
        job_id
        for job_id in _job_folders(experiments_dir)
        if _due(experiments_dir, job_id, jobs, keep_s, now)
    ]
    swept = Swept()
    if not due:
        return swept
    kept = _kept_checkpoints(experiments_dir, registry)
    for job_id in due:
        keep = kept.get(job_id, set())
        if () in keep:
            continue  # a model points at the folder itself
        folder = experiments_dir / job_id
        try:
            files, size = _remove_except(folder, keep) if keep else _remove(folder, is_folder=True)
        except OSError as exc:  # one folder that cannot go must not stop the others
            log.warning("experiments: could not trim the folder of job %s: %s", job_id, exc)
            continue
        if files or not keep:
            swept.job_ids.append(job_id)
            swept.removed_files += files
            swept.removed_bytes += size
    if swept.job_ids:
        log.info(
            "experiments: trimmed or removed the folders of %d jobs (%d files, %d bytes)",
            len(swept.job_ids), swept.removed_files, swept.removed_bytes,
        )  # fmt: skip
    return swept


def _job_folders(experiments_dir: Path) -> list[str]:
    """The job ids that have a folder; anything else there is left alone."""
    try:
        entries = list(os.scandir(experiments_dir))
    except FileNotFoundError:
        return []
    return [
        entry.name
        for entry in entries
        if re.fullmatch(JOB_ID_PATTERN, entry.name) and entry.is_dir(follow_symlinks=False)
    ]


def _due(experiments_dir: Path, job_id: str, jobs: JobStore, keep_s: float, now: float) -> bool:
    """Whether a job's folder may be trimmed now."""
    try:
        job = jobs.get(job_id)
    except NotFoundError:
        try:
            return now - _newest_change(experiments_dir / job_id) >= keep_s
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


def _newest_change(folder: Path) -> float:
    """When anything below ``folder`` last changed (seconds since the epoch)."""
    newest = folder.lstat().st_mtime
    for parent, folders, files in os.walk(folder):
        for name in (*folders, *files):
            try:
                newest = max(newest, os.lstat(os.path.join(parent, name)).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _kept_checkpoints(
    experiments_dir: Path, registry: ModelRegistry
) -> dict[str, set[RelativePath]]:
    """Job id -> the checkpoint folders below its folder that a model points at."""
    root = experiments_dir.resolve()
    kept: dict[str, set[RelativePath]] = {}
    for record in registry.records():
        path = Path(record.checkpoint_uri)
        if not path.is_absolute():
            continue
        try:
            parts = path.resolve().relative_to(root).parts
        except ValueError:
            parts = _below_job(path, record.job_id)
        if parts and re.fullmatch(JOB_ID_PATTERN, parts[0]):
            kept.setdefault(parts[0], set()).add(parts[1:])
    return kept


def _below_job(path: Path, job_id: str) -> RelativePath:
    """The parts of ``path`` from its job's folder on, for a checkpoint written where
    the storage root had another name (another mount point of the same share): the
    job id is in its path all the same. () when it is not."""
    if job_id not in path.parts:
        return ()
    index = len(path.parts) - 1 - path.parts[::-1].index(job_id)
    return path.parts[index:]


def _remove_except(folder: Path, keep: set[RelativePath]) -> tuple[int, int]:
    """Remove everything below ``folder`` but the ``keep`` paths (relative to it) and
    what lies below them; the files and bytes removed."""
    files = size = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0, 0
    for entry in entries:
        inside = {kept[1:] for kept in keep if kept and kept[0] == entry.name}
        if () in inside:
            continue  # a kept checkpoint folder, whole
        is_folder = entry.is_dir(follow_symlinks=False)
        if inside and is_folder:
            more_files, more_size = _remove_except(Path(entry.path), inside)
        else:
            more_files, more_size = _remove(Path(entry.path), is_folder)
        files += more_files
        size += more_size
    return files, size


def _remove(path: Path, is_folder: bool) -> tuple[int, int]:
    """Remove a file or a folder (links are removed, never followed); the files and
    bytes it held."""
    if not is_folder:
        try:
            size = path.lstat().st_size
        except FileNotFoundError:
            return 0, 0
        path.unlink(missing_ok=True)
        return 1, size
    files = size = 0
    for parent, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(parent, name)).st_size
                files += 1
            except FileNotFoundError:
                continue
    shutil.rmtree(path, onerror=_unless_gone)
    return files, size


def _unless_gone(
    function: object, path: str, error: tuple[type[BaseException], BaseException, object]
) -> None:
    """rmtree's error handler: a path already gone is what we wanted (drivers sweep at
    the same time); anything else is raised."""
    if not isinstance(error[1], FileNotFoundError):
        raise error[1]
