"""Helpers for the messages that name what a user sent: lists cut short, row counts."""

from __future__ import annotations

from collections.abc import Sequence

# Columns, classes or values named in one error message; past this they are counted.
MAX_NAMED = 10


def listed(items: Sequence[str]) -> str:
    """Items for a message: the first MAX_NAMED, then how many more there are."""
    shown = ", ".join(items[:MAX_NAMED])
    return shown if len(items) <= MAX_NAMED else f"{shown} and {len(items) - MAX_NAMED} more"


def rows_phrase(count: int) -> str:
    return f"{count:,} row" if count == 1 else f"{count:,} rows"
