"""StoragePath: a file or folder in tunefleet's storage, on a local disk or in object
storage (``s3://bucket/prefix``, ``gs://...``, any URI that ``pyarrow.fs`` reads).

Everything kept in storage (uploaded datasets, experiments, checkpoints, imported
models) is addressed with a StoragePath, used as ``pathlib.Path`` is (``/``,
``read_bytes``, ``write_bytes``, ``exists``, ``iterdir``...), so that one code path
serves a shared folder and a bucket. Local paths go through ``os`` and ``pathlib``
exactly as before (links counted as links and never followed: pyarrow's local
filesystem follows them, round a link cycle for ever). URIs go through ``pyarrow.fs``,
the filesystems Ray Tune writes experiments with. A StoragePath pickles with its
filesystem (an S3 endpoint included, never credentials), so a Ray task on another node
reaches the same bucket with that node's own credentials.

Readers that need a file's content (torch.load, pandas) take its bytes; nothing is
downloaded into a local folder first. Object storage has no folders: ``mkdir`` does
nothing there, and a "folder" exists while some object lies below it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import functools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pyarrow.fs as pafs

from shared.errors import StorageFullError, StorageUnavailableError

# What to check when object storage cannot be reached, for every error that says so.
STORAGE_SETTINGS_HINT = (
    "check TUNEFLEET_S3_ENDPOINT_URL (an S3-compatible server's URL; unset for AWS), the "
    "credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the node's instance "
    "role), AWS_REGION, and that the bucket exists"
)


class Stat(NamedTuple):
    """What ``StoragePath.stat`` answers, named as ``os.stat_result``'s fields are."""

    st_size: int
    st_mtime: float


@dataclass(frozen=True)
class Entry:
    """One thing below a folder: a file (a link counts as a file) or a folder."""

    path: StoragePath
    is_dir: bool
    size: int
    mtime: float
    is_symlink: bool = False

    @property
    def name(self) -> str:
        return self.path.name


def storage_path(
    location: str | PurePath | StoragePath, s3_endpoint_url: str | None = None
) -> StoragePath:
    """The StoragePath of a local path or a URI. ``s3_endpoint_url`` (``http://host:port``)
    points s3:// URIs at an S3-compatible server instead of AWS."""
    if isinstance(location, StoragePath):
        return location
    text = str(location)
    parts = urlsplit(text)
    if isinstance(location, PurePath) or "://" not in text or parts.scheme == "file":
        return StoragePath(Path(parts.path if parts.scheme == "file" else text))
    if not parts.netloc:
        raise ValueError(f"{text}: a storage URI names its bucket, as in s3://bucket/prefix")
    filesystem = _filesystem(parts.scheme, parts.netloc, s3_endpoint_url)
    return StoragePath(filesystem, f"{parts.netloc}{parts.path}".rstrip("/"), parts.scheme)


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, bucket: str, s3_endpoint_url: str | None) -> pafs.FileSystem:
    """One filesystem per bucket and endpoint: a client is slow to make (AWS resolves the
    bucket's region over the network)."""
    uri = f"{scheme}://{bucket}"
    if scheme == "s3" and s3_endpoint_url:
        endpoint = urlsplit(s3_endpoint_url)
        uri += f"?endpoint_override={endpoint.netloc}&scheme={endpoint.scheme}"
    try:
        filesystem, _ = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:  # pyarrow's errors for an unknown or bad URI
        raise StorageUnavailableError(f"storage {scheme}://{bucket}: {exc}") from exc
    return filesystem


class StoragePath:
    """A local path, or a path in an object store's filesystem."""

    def __init__(
        self, local_or_filesystem: Path | pafs.FileSystem, path: str = "", scheme: str = ""
    ) -> None:
        if isinstance(local_or_filesystem, Path):
            self.local: Path | None = local_or_filesystem
            self.filesystem: pafs.FileSystem | None = None
        else:
            self.local = None
            self.filesystem = local_or_filesystem
        self.path = str(local_or_filesystem) if self.local is not None else path
        self.scheme = scheme

    # -- naming ----------------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The local path, or ``scheme://bucket/key``: what records and settings hold."""
        return self.path if self.local is not None else f"{self.scheme}://{self.path}"

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoragePath:
        if self.local is not None:
            return StoragePath(self.local.parent)
        return self.at(self.path.rsplit("/", 1)[0])

    def at(self, path: str) -> StoragePath:
        """Another path on this one's filesystem (as Tune names checkpoints: no scheme)."""
        if self.local is not None:
            return StoragePath(Path(path))
        return StoragePath(self._remote, path.rstrip("/"), self.scheme)

    def __truediv__(self, part: str) -> StoragePath:
        if self.local is not None:
            return StoragePath(self.local / part)
        return StoragePath(self._remote, f"{self.path}/{part}", self.scheme)

    def __str__(self) -> str:
        return self.uri

    def __repr__(self) -> str:
        return f"StoragePath({self.uri!r})"

    def __eq__(self, other: object) -> bool:
        # A local location is its Path: code and tests that hold Paths compare as before.
        if isinstance(other, PurePath):
            return self.local is not None and self.local == other
        return isinstance(other, StoragePath) and self.uri == other.uri

    def __hash__(self) -> int:
        return hash(self.uri)

    @property
    def arrow(self) -> tuple[pafs.FileSystem, str]:
        """This location as pyarrow (and Ray Data) take one: a filesystem and a path."""
        if self.local is not None:
            return pafs.LocalFileSystem(), str(self.local)
        return self._remote, self.path

    @property
    def _remote(self) -> pafs.FileSystem:
        assert self.filesystem is not None
        return self.filesystem

    # -- reading ---------------------------------------------------------------------

    def exists(self) -> bool:
        if self.local is not None:
            return self.local.exists()
        return bool(self._info().type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        if self.local is not None:
            return self.local.is_file()
        return bool(self._info().type == pafs.FileType.File)

    def is_dir(self) -> bool:
        if self.local is not None:
            return self.local.is_dir()
        return bool(self._info().type == pafs.FileType.Directory)

    def stat(self) -> Stat:
        """Size and modification time; FileNotFoundError if there is nothing here."""
        if self.local is not None:
            status = self.local.stat()
            return Stat(status.st_size, status.st_mtime)
        info = self._info()
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(self.uri)
        return Stat(info.size or 0, info.mtime.timestamp() if info.mtime else 0.0)

    def read_bytes(self) -> bytes:
        """The file's content; FileNotFoundError if it is not there."""
        if self.local is not None:
            return self.local.read_bytes()
        with self._translated(), self._remote.open_input_stream(self.path) as stream:
            content: bytes = stream.read()
        return content

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def iterdir(self) -> list[StoragePath]:
        return [entry.path for entry in self.entries()]

    def glob(self, pattern: str) -> list[StoragePath]:
        """The paths directly below this folder whose name matches ``pattern``."""
        return [entry.path for entry in self.entries() if fnmatch.fnmatch(entry.name, pattern)]

    def entries(self) -> list[Entry]:
        """What lies directly below this folder (nothing if it does not exist)."""
        if self.local is not None:
            try:
                found = list(os.scandir(self.local))
            except (FileNotFoundError, NotADirectoryError):
                return []
            return [entry for entry in map(self._local_entry, found) if entry is not None]
        return [self._remote_entry(info) for info in self._listing(recursive=False)]

    def walk_files(self) -> Iterator[Entry]:
        """Every file below this folder, at any depth (links are files, never followed)."""
        if self.local is None:
            for info in self._listing(recursive=True):
                if info.type == pafs.FileType.File:
                    yield self._remote_entry(info)
            return
        for entry in self.entries():
            if entry.is_dir:
                yield from entry.path.walk_files()
            else:
                yield entry

    # -- writing ---------------------------------------------------------------------

    def write_bytes(self, content: bytes) -> None:
        """Replace the file at once: a reader sees the old content or the new, never
        part of it (locally a temporary file renamed over it; an object store's upload
        is whole or nothing)."""
        if self.local is None:
            with self._translated(), self._remote.open_output_stream(self.path) as stream:
                stream.write(content)
            return
        descriptor, partial = tempfile.mkstemp(dir=self.local.parent, prefix=f".{self.local.name}.")
        try:
            with _room_for(self.uri), os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
            os.replace(partial, self.local)
        except BaseException:
            os.unlink(partial)  # a write that failed leaves nothing behind
            raise

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def append_text(self, text: str) -> None:
        """Add to the end of the file (made if missing). Objects cannot be appended to:
        there the file is read and written again whole."""
        if self.local is not None:
            with _room_for(self.uri), open(self.local, "a") as out:
                out.write(text)
            return
        try:
            before = self.read_bytes()
        except FileNotFoundError:
            before = b""
        self.write_bytes(before + text.encode())

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Make the folder; in object storage, nothing to do (folders are key prefixes)."""
        if self.local is not None:
            self.local.mkdir(parents=parents, exist_ok=exist_ok)

    def unlink(self, missing_ok: bool = False) -> None:
        if self.local is not None:
            self.local.unlink(missing_ok=missing_ok)
            return
        try:
            with self._translated():
                self._remote.delete_file(self.path)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def rmtree(self) -> None:
        """Remove the folder and everything below it (links removed, never followed); a
        folder already gone, or a part of it, is no error (drivers sweep at once)."""
        if self.local is not None:
            shutil.rmtree(self.local, onerror=_unless_gone)
            return
        with contextlib.suppress(FileNotFoundError), self._translated():
            self._remote.delete_dir(self.path)

    def copy_from(self, local_file: Path) -> None:
        """Copy a local file here."""
        if self.local is not None:
            shutil.copy(local_file, self.local)
            return
        self.write_bytes(local_file.read_bytes())

    # -- helpers ---------------------------------------------------------------------

    def _info(self) -> pafs.FileInfo:
        with self._translated():
            return self._remote.get_file_info(self.path)

    def _listing(self, recursive: bool) -> list[pafs.FileInfo]:
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=recursive)
        with self._translated():
            return list(self._remote.get_file_info(selector))

    def _local_entry(self, entry: os.DirEntry[str]) -> Entry | None:
        try:
            status = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # removed while we looked
            return None
        is_dir = entry.is_dir(follow_symlinks=False)
        size = 0 if is_dir else status.st_size
        path = StoragePath(Path(entry.path))
        return Entry(path, is_dir, size, status.st_mtime, entry.is_symlink())

    def _remote_entry(self, info: pafs.FileInfo) -> Entry:
        is_dir = info.type == pafs.FileType.Directory
        mtime = info.mtime.timestamp() if info.mtime else 0.0
        return Entry(self.at(info.path), is_dir, 0 if is_dir else info.size or 0, mtime)

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """pyarrow's OSErrors of an unreachable store (wrong endpoint, credentials,
        bucket) as StorageUnavailableError; a missing file stays FileNotFoundError."""
        try:
            yield
        except (FileNotFoundError, StorageUnavailableError):
            raise
        except OSError as exc:
            raise StorageUnavailableError(
                f"storage {self.uri} cannot be reached: {exc}; {STORAGE_SETTINGS_HINT}"
            ) from exc

    def __reduce__(self) -> tuple[Any, ...]:
        if self.local is not None:
            return (StoragePath, (self.local,))
        return (StoragePath, (self.filesystem, self.path, self.scheme))


def _unless_gone(
    function: object, path: str, error: tuple[type[BaseException], BaseException, object]
) -> None:
    """rmtree's error handler: a path already gone is what we wanted; anything else is
    raised."""
    if not isinstance(error[1], FileNotFoundError):
        raise error[1]


# A write that failed for want of room: the disk or the user's quota is full, or the file
# would pass the process's file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ).
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def _room_for(uri: str) -> Iterator[None]:
    """StorageFullError, naming the file, for a local write that had no room."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in _NO_ROOM or isinstance(exc, StorageFullError):
            raise
        raise StorageFullError(
            f"writing {uri} failed: {exc.strerror}; the storage has no room for it (free "
            "space on it, or raise the limit), then try again"
        ) from exc
