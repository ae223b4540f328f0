"""ImportedModelFiles: the checkpoints of imported models, under ``<storage>/models``
(a folder or a bucket).

A model trained by a job keeps its checkpoint in the job's experiment folder (see
shared/retention.py); a model imported with POST /models/import keeps its own copy
here, in its tenant's folder, one folder per model id.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePath

from shared.folders import tenant_folder
from shared.model import CHECKPOINT_FILE
from shared.quotas import ensure_room, tree_bytes
from shared.storage import StoragePath, storage_path
from shared.vocabulary import MODEL_ID_PATTERN, Subject

log = logging.getLogger(__name__)


class ImportedModelFiles:
    """Imported checkpoints: ``<root>/<model id>/model.pt`` per tenant folder."""

    def __init__(self, root: PurePath | StoragePath) -> None:
        self._root = storage_path(root)

    def save(self, tenant: str, model_id: str, checkpoint: Path) -> StoragePath:
        """Keep a copy of the local ``checkpoint`` file as the model's; its folder, whose
        ``str`` is the model's checkpoint_uri."""
        home = tenant_folder(self._root, tenant) / model_id
        home.mkdir(parents=True)
        (home / CHECKPOINT_FILE).copy_from(checkpoint)
        return home

    def ensure_room(self, tenant: str, adding_bytes: int, quota_bytes: int) -> None:
        """PayloadTooLargeError if ``adding_bytes`` more would take the tenant's imported
        models past ``quota_bytes`` (0: no quota)."""
        ensure_room(
            used_bytes=self.used_bytes(tenant) if quota_bytes else 0,
            adding_bytes=adding_bytes,
            quota_bytes=quota_bytes,
            what="imported models",
            setting="TUNEFLEET_MAX_MODEL_BYTES_PER_TENANT",
            fix="delete models it no longer needs",
            subject=Subject.MODEL,
        )

    def used_bytes(self, tenant: str) -> int:
        """Bytes of a tenant's imported checkpoints. Only folders named by model ids:
        the default tenant's folder also holds the other tenants' folders."""
        return sum(
            tree_bytes(entry.path)
            for entry in tenant_folder(self._root, tenant).entries()
            if re.fullmatch(MODEL_ID_PATTERN, entry.name) and not entry.is_symlink
        )

    def remove(self, tenant: str, model_id: str, checkpoint_uri: str) -> bool:
        """Remove an imported model's folder; False, touching nothing, when the
        checkpoint is not where this store keeps the model's (a job's model, in its
        experiment folder)."""
        home = tenant_folder(self._root, tenant) / model_id
        if "://" in checkpoint_uri:
            ours = checkpoint_uri.rstrip("/") == home.uri
        else:
            ours = Path(checkpoint_uri).resolve() == Path(home.uri).resolve()
        if not ours:
            return False
        try:
            home.rmtree()
        except OSError as exc:
            # The record is gone already; the left-over file only counts against the
            # tenant's quota until someone removes it.
            log.warning("model %s: could not remove %s: %s", model_id, home, exc)
        return True
