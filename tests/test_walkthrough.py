"""The walkthrough of docs/getting-started.md, run as a reader runs it: its marked shell
blocks in one bash session and its Python block, verbatim but for the stack's address
(the suite's stack listens on a free port, not 8000), from the repository's root."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "getting-started.md"
MARKER = "<!-- walkthrough: tests/test_walkthrough.py runs this block -->"

pytestmark = pytest.mark.e2e


def marked_blocks() -> list[tuple[str, str]]:
    """(language, code) of each block that follows the marker."""
    blocks = re.findall(re.escape(MARKER) + r"\s*```(\w+)\n(.*?)```", PAGE.read_text(), re.S)
    assert [language for language, _ in blocks] == ["sh", "sh", "python"], blocks
    return blocks


def at_stack(code: str, stack: Stack) -> str:
    address = stack.url.removeprefix("http://")
    return code.replace("localhost:8000", address).replace("127.0.0.1:8000", address)


def test_the_walkthrough_runs_as_written(stack: Stack, tmp_path: Path) -> None:
    (first, second), python = [code for _, code in marked_blocks()[:2]], marked_blocks()[2][1]
    # A job's id after each step the reader would look at, printed by the script itself.
    script = "set -euo pipefail\n" + at_stack(first + second, stack)
    script += '\nprintf "\\nJOB=%s\\nCHURN=%s\\n" "$JOB" "$CHURN"\n'
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}"}
    shell = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert shell.returncode == 0, shell.stderr[-3000:] + shell.stdout[-3000:]
    ids = dict(re.findall(r"^(JOB|CHURN)=([0-9a-f]{32})$", shell.stdout, re.M))
    for name in ("JOB", "CHURN"):
        job = stack.http.get(f"/jobs/{ids[name]}").json()
        assert job["state"] == "succeeded", job
    # Step 4's and step 6's predictions were answered (curl prints them as they come).
    assert shell.stdout.count('"predictions":') == 2, shell.stdout[-3000:]

    ran = subprocess.run(
        [sys.executable, "-c", at_stack(python, stack)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "Best config:" in ran.stdout and "probability/" in ran.stdout
