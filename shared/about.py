"""tunefleet's version: pyproject.toml's, read from the installed package's metadata."""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version


@lru_cache(maxsize=1)
def tunefleet_version() -> str:
    """The installed tunefleet's version ("unknown" when run from a tree not installed)."""
    try:
        return version("tunefleet")
    except PackageNotFoundError:
        return "unknown"
