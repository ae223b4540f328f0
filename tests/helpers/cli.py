"""The tunefleet CLI run the way a user runs it, against a test stack."""

from __future__ import annotations

import subprocess

from tests.helpers.stack import TUNEFLEET, Stack


def tunefleet(
    stack: Stack, *args: str, stdin: str | None = None, columns: int = 250
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TUNEFLEET), *args], env={**stack.env, "COLUMNS": str(columns)}, input=stdin,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def tunefleet_output(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [str(TUNEFLEET), *args], env=stack.env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
