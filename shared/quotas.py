"""Per-tenant quotas: what files take in storage (a folder or a bucket), and refusing
what would pass a quota.

Usage is measured from the files themselves, not kept as a counter: a counter drifts
from the disk when a write or a removal half fails, and the folders are small enough
to list at each upload. Two uploads at once may both fit and together pass the quota
by up to one upload; the quota is a bound on growth, not an exact budget.
"""

from __future__ import annotations

from pathlib import PurePath

from shared.errors import PayloadTooLargeError
from shared.storage import StoragePath, storage_path
from shared.vocabulary import Subject


def tree_bytes(folder: PurePath | StoragePath) -> int:
    """Bytes of every file below ``folder`` (0 if it does not exist). Links are counted
    as links, never followed: a link must not make another folder count, or loop."""
    return sum(entry.size for entry in storage_path(folder).walk_files())


def ensure_room(
    *,
    used_bytes: int,
    adding_bytes: int,
    quota_bytes: int,
    what: str,
    setting: str,
    fix: str,
    subject: Subject,
) -> None:
    """PayloadTooLargeError if ``adding_bytes`` more would take ``used_bytes`` past
    ``quota_bytes`` (0: no quota). ``what`` names the files ("datasets"), ``setting``
    the variable that sets the quota, ``fix`` how to make room, ``subject`` what the
    files are."""
    if quota_bytes == 0 or used_bytes + adding_bytes <= quota_bytes:
        return
    raise PayloadTooLargeError(
        f"the tenant's {what} take {used_bytes:,} bytes of its quota of {quota_bytes:,} "
        f"({setting}), and this needs {adding_bytes:,} more; {fix} to make room",
        subject=subject,
    )
