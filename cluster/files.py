"""Files the CLI writes for a user: whole, or not at all."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to, renamed to ``path`` once the block
    ends without an error and removed otherwise: an interrupted download or a failed
    write never leaves a truncated file under the name the user asked for (nor replaces
    a good one that was there)."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_export(content: bytes, export_format: str, path: Path) -> str:
    """Write an exported model to ``path``: one file, or, for an MLflow model not named
    .zip, the model's folder (which ``mlflow.pyfunc.load_model`` takes). Refuses to
    write into a folder that has files. Returns what was written, in words."""
    if export_format != "mlflow" or path.suffix.lower() == ".zip":
        with written_whole(path) as partial:
            partial.write_bytes(content)
        return f"{len(content)} bytes"
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"{path} exists and is not an empty folder; name a new folder")
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            archive.extractall(staging)
            count = len(archive.namelist())
        if path.exists():
            path.rmdir()
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return f"an MLflow model folder of {count} files"
