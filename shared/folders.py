"""Where each tenant's files live below a shared root (datasets, models, batch outputs)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from shared.vocabulary import DEFAULT_TENANT

if TYPE_CHECKING:  # the storage module brings pyarrow; settings import this one
    from shared.storage import StoragePath

FolderT = TypeVar("FolderT", Path, "StoragePath")

# Below a shared root, the folders of the tenants other than the default one, whose
# folder is the root itself.
TENANTS_FOLDER = "tenants"


def tenant_folder(root: FolderT, tenant: str) -> FolderT:
    """A tenant's own folder below ``root`` (the default tenant's is ``root``)."""
    return root if tenant == DEFAULT_TENANT else root / TENANTS_FOLDER / tenant
